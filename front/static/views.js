// Toggles of the result views: labels of the regions' boxes, and each primitive type (and the
// image under them) of the vectorization view. Each toggle is a real checkbox, so keyboards and
// screen readers get them for free.
window.FrontViews = (function () {
  "use strict";
  function init(root) {
    root.querySelectorAll(".toggle-labels").forEach(function (box) {
      box.addEventListener("change", function () {
        root.querySelectorAll(".regions-view").forEach(function (view) {
          view.classList.toggle("hide-labels", !box.checked);
        });
      });
    });
    root.querySelectorAll(".toggle-type").forEach(function (box) {
      box.addEventListener("change", function () {
        root.querySelectorAll(".prim-" + box.value).forEach(function (group) {
          group.classList.toggle("is-hidden", !box.checked);
        });
      });
    });
    root.querySelectorAll(".toggle-image").forEach(function (box) {
      box.addEventListener("change", function () {
        root.querySelectorAll("image.under").forEach(function (image) {
          image.classList.toggle("is-hidden", !box.checked);
        });
      });
    });
    root.querySelectorAll(".gallery li[data-crop]").forEach(function (item) {
      var crop = item.dataset.crop;
      function mark(on) {
        root.querySelectorAll('.box[data-crop="' + crop + '"]').forEach(function (g) { g.classList.toggle("is-active", on); });
      }
      item.addEventListener("mouseenter", function () { mark(true); });
      item.addEventListener("mouseleave", function () { mark(false); });
      item.addEventListener("focusin", function () { mark(true); });
      item.addEventListener("focusout", function () { mark(false); });
    });
  }
  return {init: init};
}());
