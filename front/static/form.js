// The start form: one click only (the upload may take a while), and say so.
(function () {
  "use strict";
  var form = document.getElementById("start-form");
  if (!form) { return; }
  form.addEventListener("submit", function () {
    var button = document.getElementById("start-button");
    button.disabled = true;
    button.textContent = "Sending…";
  });
}());
