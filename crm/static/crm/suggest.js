// Offers the provider a mistyped address was probably meant for (ann@gmial.com → ann@gmail.com), by
// the rule of crm.addresses.suggest_domain: a known mistake, or one typing mistake from exactly one
// big provider. Only a hint: the address is sent as the person leaves it.
(function () {
  const data = JSON.parse(document.getElementById("dw-typo-domains").textContent);
  const providers = new Set(data.providers);

  // Optimal string alignment distance, as crm.addresses.edit_distance.
  function distance(a, b) {
    let before = [];
    let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
    for (let i = 1; i <= a.length; i += 1) {
      const current = [i];
      for (let j = 1; j <= b.length; j += 1) {
        const cost = a[i - 1] === b[j - 1] ? 0 : 1;
        let value = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost);
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
          value = Math.min(value, before[j - 2] + 1);
        }
        current.push(value);
      }
      before = previous;
      previous = current;
    }
    return previous[b.length];
  }

  function suggestDomain(domain) {
    const typed = domain.toLowerCase();
    if (providers.has(typed)) { return null; }
    if (Object.prototype.hasOwnProperty.call(data.typos, typed)) { return data.typos[typed]; }
    const close = data.providers.filter((provider) => distance(typed, provider) === 1).sort();
    return close.length === 1 ? close[0] : null;
  }
  window.deliverwell = { suggestDomain: suggestDomain };

  const input = document.querySelector('input[name="email"]');
  if (!input) { return; }
  const hint = document.createElement("p");
  hint.className = "suggestion";
  hint.id = "email-suggestion";
  hint.setAttribute("aria-live", "polite");
  hint.hidden = true;
  input.closest(".field").appendChild(hint);

  input.addEventListener("change", () => {
    const typed = input.value.trim();
    const at = typed.lastIndexOf("@");
    const domain = at > 0 ? suggestDomain(typed.slice(at + 1)) : null;
    hint.replaceChildren();
    hint.hidden = domain === null;
    if (domain === null) { return; }
    const corrected = typed.slice(0, at + 1) + domain;
    const use = document.createElement("button");
    use.type = "button";
    use.className = "suggestion-use";
    use.textContent = corrected;
    use.addEventListener("click", () => {
      input.value = corrected;
      hint.hidden = true;
      input.focus();
    });
    hint.append("Did you mean ", use, "?");
  });
})();
