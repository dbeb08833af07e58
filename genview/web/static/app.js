// genview dashboard: keeps the bearer token for this tab only (sessionStorage), loads
// server-rendered (autoescaped) HTML fragments with it, submits the spec form, cancels jobs.
"use strict";
(function () {
  const TOKEN_KEY = "genview-token";
  const token = () => sessionStorage.getItem(TOKEN_KEY);
  const $ = (id) => document.getElementById(id);

  async function api(path, options) {
    const opts = Object.assign({ headers: {} }, options || {});
    opts.headers = Object.assign({ Authorization: "Bearer " + token() }, opts.headers);
    const response = await fetch(path, opts);
    if (response.status === 401) {
      showLogin("the service did not accept this token");
      throw new Error("unauthorized");
    }
    return response;
  }

  function showLogin(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    $("login").hidden = false;
    $("authed").hidden = true;
    $("logout").hidden = true;
    $("login-error").textContent = message || "";
  }

  function showAuthed() {
    $("login").hidden = true;
    $("authed").hidden = false;
    $("logout").hidden = false;
    startFragments();
  }

  // A fragment is HTML the server rendered with Jinja autoescaping, so inserting it is safe.
  async function loadFragment(element) {
    let url = element.dataset.fragment;
    if (element.dataset.keepQuery) url += window.location.search;
    const response = await api(url);
    const text = await response.text();
    if (!response.ok) {
      element.textContent = "error " + response.status + ": " + text;
      return false;
    }
    element.innerHTML = text;
    const card = element.querySelector("[data-terminal]");
    return !(card && card.dataset.terminal);
  }

  const timers = [];
  function startFragments() {
    document.querySelectorAll("[data-fragment]").forEach(function (element) {
      const period = Number(element.dataset.refresh || 0);
      const tick = async function () {
        let again = false;
        try { again = await loadFragment(element); } catch (err) { return; }
        if (period && again) timers.push(setTimeout(tick, period));
      };
      tick();
    });
  }

  function fieldValue(input) {
    const kind = input.dataset.kind;
    if (kind === "boolean") return input.checked;
    const text = input.value.trim();
    if (text === "") return undefined;
    if (kind === "integer" || kind === "number") return Number(text);
    if (kind === "array") return text.split(",").map(function (part) { return Number(part.trim()); });
    if (kind === "object") {
      try { return JSON.parse(text); } catch (err) { throw { field: input.name, message: "not valid JSON: " + err.message }; }
    }
    return text;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach(function (el) { el.textContent = ""; });
    $("submit-error").textContent = "";
  }

  function showError(field, message) {
    const target = field && $("error-" + field);
    if (target) target.textContent = message;
    else $("submit-error").textContent = (field ? field + ": " : "") + message;
  }

  async function submitJob(event) {
    event.preventDefault();
    const form = event.target;
    clearErrors(form);
    const body = {};
    try {
      form.querySelectorAll("[data-kind]").forEach(function (input) {
        const value = fieldValue(input);
        if (value !== undefined && !(input.dataset.kind === "boolean" && value === false)) body[input.name] = value;
      });
    } catch (err) {
      showError(err.field, err.message);
      return;
    }
    const response = await api("/v1/jobs", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await response.json().catch(function () { return {}; });
    if (response.ok) {
      window.location.href = "/jobs/" + encodeURIComponent(answer.id);
      return;
    }
    if (Array.isArray(answer.detail)) {
      // FastAPI's 422: loc = ["body", field, ...]; errors of the whole spec have no field.
      answer.detail.forEach(function (err) {
        const loc = err.loc || [];
        const field = loc.length > 1 && loc[0] === "body" ? String(loc[1]) : null;
        showError(field, err.msg);
      });
    } else {
      showError(null, "error " + response.status + ": " + (answer.detail || response.statusText));
    }
  }

  async function onClick(event) {
    const button = event.target.closest("[data-cancel]");
    if (!button) return;
    button.disabled = true;
    const response = await api("/v1/jobs/" + encodeURIComponent(button.dataset.cancel) + "/cancel", { method: "POST" });
    if (!response.ok) {
      const answer = await response.json().catch(function () { return {}; });
      button.insertAdjacentText("afterend", " " + (answer.detail || response.statusText));
    }
    const job = $("job");
    if (job) loadFragment(job);
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
      try {
        const response = await api("/v1/jobs?limit=1");
        if (response.ok) showAuthed();
      } catch (err) { /* showLogin already said why */ }
    });
    $("logout").addEventListener("click", function () { timers.forEach(clearTimeout); showLogin(""); });
    const form = $("submit-form");
    if (form) form.addEventListener("submit", submitJob);
    document.addEventListener("click", onClick);
    if (token()) showAuthed(); else showLogin("");
  });
})();
