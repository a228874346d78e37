// The job page: follows the job's live events (EventSource on the front's relay of the API's
// Server-Sent Events) and, where they cannot be had (no EventSource, the front refused the stream,
// the connection keeps failing), asks the front for the job's state every few seconds instead.
// Either way it updates the progress bar and the words beside it, and once the job succeeded
// fetches the result view (HTML from the front) and wires its toggles. No framework, no build step.
(function () {
  "use strict";
  var section = document.getElementById("job");
  if (!section) { return; }
  var stateUrl = section.dataset.stateUrl;
  var eventsUrl = section.dataset.eventsUrl;
  var viewUrl = section.dataset.viewUrl;
  var pollMs = Math.max(250, parseInt(section.dataset.pollMs, 10) || 1000);
  var result = document.getElementById("result");
  var failures = 0;
  var polling = false;
  var MAX_EVENT_ERRORS = 3;  // reconnections in a row without an event before falling back to polling

  function text(id, value) {
    var el = document.getElementById(id);
    if (el && el.textContent !== value) { el.textContent = value; }
    return el;
  }

  function show(id, visible) {
    var el = document.getElementById(id);
    if (el) { el.hidden = !visible; }
  }

  function render(state) {
    var words = text("state-words", state.state_words);
    words.className = "state state-" + state.state.toLowerCase();
    var bar = document.getElementById("progress");
    bar.value = state.percent;
    bar.textContent = state.percent + " %";
    text("progress-words", state.progress_words);
    text("percent", (Math.round(state.percent * 10) / 10) + " %");
    text("failure", state.failure);
    show("failure", !!state.failure);
    text("problem", state.problem);
    show("problem", !!state.problem);
    var list = document.getElementById("image-error-list");
    if (list.children.length !== state.errors.length) {
      list.textContent = "";
      state.errors.forEach(function (message) {
        var li = document.createElement("li");
        li.textContent = message;
        list.appendChild(li);
      });
    }
    show("image-errors", state.errors.length > 0);
    show("cancel-form", !state.finished);
    text("updates", state.callbacks + (state.callbacks === 1 ? " callback" : " callbacks") + " received");
    section.dataset.state = state.state;
    section.dataset.finished = state.finished ? "true" : "false";
  }

  function loadView() {
    return fetch(viewUrl, {credentials: "same-origin"}).then(function (response) {
      if (response.status !== 200) { return; }
      return response.text().then(function (html) {
        result.innerHTML = html;  // the front's own template, escaped server-side
        result.setAttribute("aria-busy", "false");
        window.FrontViews.init(result);
      });
    });
  }

  // Draws `state`; true once the job ended (and its result view is on its way).
  function update(state) {
    render(state);
    if (!state.finished) { return false; }
    if (state.state === "SUCCESS" && !result.querySelector("[data-view]")) {
      loadView();
    } else {
      result.setAttribute("aria-busy", "false");
    }
    return true;
  }

  function poll() {
    fetch(stateUrl, {credentials: "same-origin", cache: "no-store"}).then(function (response) {
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.json();
    }).then(function (state) {
      failures = 0;
      if (!update(state)) { window.setTimeout(poll, pollMs); }
    }).catch(function (error) {
      failures += 1;
      text("problem", "The front did not answer (" + error.message + "); trying again…");
      show("problem", true);
      window.setTimeout(poll, Math.min(30000, pollMs * Math.pow(2, failures)));
    });
  }

  function startPolling() {
    if (polling) { return; }
    polling = true;
    section.dataset.live = "poll";
    window.setTimeout(poll, 0);
  }

  function listen() {
    var source = new window.EventSource(eventsUrl, {withCredentials: true});
    var errors = 0;
    section.dataset.live = "events";
    source.addEventListener("state", function (message) {
      errors = 0;
      if (update(JSON.parse(message.data))) { source.close(); }
    });
    source.onerror = function () {
      errors += 1;
      // CLOSED: the front refused the stream (too many live pages, the API away) or said there is
      // nothing more (204); else the browser reconnects by itself, resuming with Last-Event-ID.
      if (source.readyState === window.EventSource.CLOSED || errors >= MAX_EVENT_ERRORS) {
        source.close();
        startPolling();
      }
    };
  }

  if (result.querySelector("[data-view]")) { window.FrontViews.init(result); }
  if (section.dataset.finished !== "true") {
    if (eventsUrl && window.EventSource) { listen(); } else { startPolling(); }
  }
}());
