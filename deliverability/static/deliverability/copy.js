"use strict";
// "Copy" buttons next to DNS records: the exact value, without the page's line wrapping.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button.dw-copy");
  if (!button) return;
  navigator.clipboard.writeText(button.dataset.copy).then(() => button.classList.add("dw-copied"));
});
