// Flask Tour: small progressive enhancements. Everything works without JavaScript.
"use strict";

// The server draws <html class="large-text"> from this cookie (app.py, section 19); the
// button sets the same cookie, so the next page is large from its first byte too.
const LARGE_TEXT_COOKIE = "large_text";

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-needs-js]").forEach((element) => { element.hidden = false; });
  addTextSizeToggle(document.querySelector("[data-preferences]"));
  document.querySelectorAll("pre.code").forEach(addCopyButton);
  document.addEventListener("keydown", followArrowKeys);
  document.querySelectorAll("[data-api-console]").forEach(setUpApiConsole);
});

// ---- Large text -------------------------------------------------------------------------

function addTextSizeToggle(place) {
  if (!place) return;
  const root = document.documentElement;
  const button = element("button", { type: "button", className: "toggle" }, "Large text");
  const show = () => button.setAttribute("aria-pressed", String(root.classList.contains("large-text")));
  button.addEventListener("click", () => {
    const on = root.classList.toggle("large-text");
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${LARGE_TEXT_COOKIE}=${on ? "on" : "off"}; Path=${place.dataset.cookiePath || "/"}` +
      `; Max-Age=31536000; SameSite=Lax${secure}`;
    show();
  });
  show();
  place.replaceChildren(button); // in place of the link to the no-JavaScript form
}

// ---- Copy buttons -------------------------------------------------------------------------

function addCopyButton(pre) {
  const block = element("div", { className: "code-block" });
  pre.replaceWith(block);
  const status = element("span", { role: "status" });
  const button = element("button", { type: "button", className: "copy-button" }, "Copy");
  button.setAttribute("aria-label", "Copy the code");
  button.addEventListener("click", () => copyCode(pre, status));
  block.append(element("div", { className: "copy-bar" }, status, button), pre);
}

async function copyCode(pre, status) {
  const code = pre.querySelector("code") || pre;
  try {
    // Missing where the page is not a secure context (plain http on a classroom network).
    await navigator.clipboard.writeText(code.textContent);
    status.textContent = "Copied";
    setTimeout(() => { status.textContent = ""; }, 2500);
  } catch {
    const range = document.createRange();
    range.selectNodeContents(code);
    window.getSelection().removeAllRanges();
    window.getSelection().addRange(range);
    status.textContent = "Could not copy: the code is selected, press Ctrl+C (⌘C on a Mac).";
  }
}

// ---- Arrow keys move between topics -------------------------------------------------------

function followArrowKeys(event) {
  const rel = { ArrowLeft: "prev", ArrowRight: "next" }[event.key];
  if (!rel || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || event.shiftKey) return;
  if (event.target.closest("input, textarea, select, [contenteditable]")) return; // keys edit text there
  const link = document.querySelector(`.topic-nav a[rel="${rel}"]`);
  if (link) {
    event.preventDefault();
    link.click();
  }
}

// ---- The API console (topics 6 and 11) ------------------------------------------------------

function setUpApiConsole(panel) {
  const urls = panel.dataset;
  const tokenStatus = panel.querySelector("[data-token-status]");
  let token = null; // kept in memory only: a token in localStorage is readable by any script

  onSubmit(panel.querySelector('[data-console-form="account"]'), async (form, action) => {
    const credentials = { username: form.elements.username.value, password: form.elements.password.value };
    const reply = await callApi(panel, "POST", action === "register" ? urls.usersUrl : urls.tokenUrl, credentials);
    showFieldErrors(form, reply.json);
    if (action === "token" && reply.ok) {
      token = reply.json.access_token;
      tokenStatus.textContent = `Token: ${shorten(token)} (expires in ${reply.json.expires_in} s)`;
    }
  });
  onSubmit(panel.querySelector('[data-console-form="notes"]'), async (form, action) => {
    const note = { title: form.elements.title.value, body: form.elements.body.value };
    const reply = action === "create"
      ? await callApi(panel, "POST", urls.notesUrl, note, token)
      : await callApi(panel, "GET", urls.notesUrl, undefined, token);
    showFieldErrors(form, reply.json);
  });
}

function onSubmit(form, handler) {
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    handler(form, event.submitter ? event.submitter.value : "");
  });
}

async function callApi(panel, method, url, body, token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const absolute = new URL(url, document.baseURI).href;
  const exchange = logRequest(panel, method, absolute, headers, body);
  try {
    const response = await fetch(absolute, {
      method, headers, credentials: "omit", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const json = parseJson(text);
    logResponse(panel, exchange, response, json === undefined ? text : JSON.stringify(json, null, 2),
                json && json.detail);
    return { ok: response.ok, json: json || null };
  } catch (error) {
    logResponse(panel, exchange, null, `The request failed: ${error.message}`, error.message);
    return { ok: false, json: null };
  }
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

// Tie the API's 422 messages to their fields, as the server-rendered forms do.
function showFieldErrors(form, json) {
  form.querySelectorAll("[data-console-error]").forEach((message) => message.remove());
  form.querySelectorAll("[aria-invalid]").forEach((input) => {
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
  });
  const errors = (json && json.errors) || {};
  for (const [name, text] of Object.entries(errors)) {
    const input = form.elements[name];
    if (!input || !input.id) continue;
    const message = element("p", { className: "error", id: `${input.id}-error` }, text);
    message.dataset.consoleError = "";
    input.after(message);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", message.id);
  }
}

function logRequest(panel, method, url, headers, body) {
  const shown = { ...headers };
  if (shown.Authorization) shown.Authorization = `Bearer ${shorten(shown.Authorization.slice(7))}`;
  const shownBody = body && body.password !== undefined ? { ...body, password: "•".repeat(8) } : body;
  const heading = element("h4", {}, `${method} ${url}`);
  const request = part("Request", [`${method} ${url}`, ...headerLines(Object.entries(shown)), "",
                                   shownBody === undefined ? "" : JSON.stringify(shownBody, null, 2)]);
  const exchange = element("li", { className: "exchange" }, heading,
                           element("div", { className: "exchange-parts" }, request));
  const log = panel.querySelector("[data-console-log]");
  log.prepend(exchange);
  while (log.children.length > 20) log.lastElementChild.remove();
  return exchange;
}

function logResponse(panel, exchange, response, bodyText, detail) {
  const status = response ? `${response.status} ${response.statusText}`.trim() : "no response";
  const label = element("span", { className: response && response.ok ? "status-ok" : "status-error" }, ` → ${status}`);
  exchange.querySelector("h4").append(label);
  const head = response ? [`HTTP ${status}`, ...headerLines(response.headers.entries()), ""] : [];
  exchange.querySelector(".exchange-parts").append(part("Response", [...head, bodyText]));
  panel.querySelector("[data-console-status]").textContent =
    exchange.querySelector("h4").textContent + (detail && !(response && response.ok) ? `: ${detail}` : "");
}

function headerLines(entries) {
  return Array.from(entries, ([name, value]) => `${name}: ${value}`);
}

function part(title, lines) {
  const pre = element("pre", { className: "code" }, element("code", {}, lines.join("\n").trimEnd()));
  const section = element("div", {}, element("h5", {}, title), pre);
  addCopyButton(pre);
  return section;
}

function shorten(token) {
  return token.length > 24 ? `${token.slice(0, 20)}…` : token;
}

function element(tag, properties, ...children) {
  const node = Object.assign(document.createElement(tag), properties);
  if (properties.role) node.setAttribute("role", properties.role);
  node.append(...children);
  return node;
}
