// claim_t5 review desk. No framework, no build step, nothing loaded from outside.
// Safety: user data (inputs, reports, notes, file contents) is only ever put in the page with textContent; the one
// HTML the page inserts is the service's report_html, which escapes everything it shows.
"use strict";
(() => {
const $ = (id) => document.getElementById(id);
const KEY = "claim_t5.api_key";
const state = { schema: null, me: null, draft: null, job: null, rows: [], checkTimer: null, checkSeq: 0 };

function el(tag, props = {}, ...children) {  // an element with text children only (never HTML)
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "text") e.textContent = v; else if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function setStatus(id, text, kind = "") { const e = $(id); e.textContent = text; e.className = "status " + kind; }

// ---- the API: X-API-Key from this tab's sessionStorage; a 401 asks for the key once and tries again ----
class ApiError extends Error { constructor(status, body) { super(errorText(body, status)); this.status = status; this.body = body; } }
function errorText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((x) => x.msg || JSON.stringify(x)).join("; ");
  return `the service answered ${status}`;
}
let keyPrompt = null;
function askKey(reason) {
  if (keyPrompt) return keyPrompt;
  keyPrompt = new Promise((resolve) => {
    const dlg = $("key-dialog");
    $("key-reason").textContent = reason;
    $("key-input").value = "";
    dlg.addEventListener("close", () => {
      keyPrompt = null;
      const v = $("key-input").value.trim();
      if (dlg.returnValue === "ok" && v) { sessionStorage.setItem(KEY, v); resolve(true); } else resolve(false);
    }, { once: true });
    dlg.showModal();
  });
  return keyPrompt;
}
async function api(path, opts = {}, tries = 0) {
  const headers = Object.assign({}, opts.headers || {});
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  const res = await fetch(path, Object.assign({}, opts, { headers }));
  if (res.status === 401) {  // asked once per tab; again only when the key given was refused (3 tries)
    if (key) sessionStorage.removeItem(KEY);
    const again = tries < 3 && await askKey(key ? "✗ That API key was refused. Enter the right key." : "This service needs an API key.");
    if (again) return api(path, opts, tries + 1);
    showPageError("✗ Refused: this service needs a valid API key (X-API-Key). Reload the page to enter it again.");
    throw new ApiError(401, { detail: "refused: a valid API key is needed" });
  }
  return res;
}
async function json(path, opts) {
  const res = await api(path, opts);
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}
function showPageError(text) { const e = $("page-error"); e.textContent = text; e.hidden = false; }
function post(path, data) { return json(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) }); }

// ---- the form, built from the model's saved schema ----
function fieldId(name) { return "f-" + name.replace(/[^A-Za-z0-9_-]/g, "_"); }
function buildForm(schema) {
  const box = $("fields");
  box.replaceChildren();
  for (const f of schema.fields) {
    const id = fieldId(f.name), hint = id + "-hint", err = id + "-error", flag = id + "-unseen";
    const label = el("label", { for: id }, f.name.replace(/_/g, " "));
    if (f.required) label.append(" ", el("span", { class: "req-mark", text: "* required" }));
    const input = el("input", { id, name: f.name, type: "text", autocomplete: "off", "aria-describedby": `${hint} ${flag} ${err}` });
    if (f.required) { input.setAttribute("aria-required", "true"); input.required = true; }
    const parts = [label, input];
    let hintText = f.kind === "copy" ? "Copied into the report exactly as typed (an id or a name)." : "";
    if (f.kind === "category") {
      const list = el("datalist", { id: id + "-values" });
      for (const v of f.values || []) list.append(el("option", { value: v }));
      input.setAttribute("list", list.id);
      parts.push(list);
      hintText = f.values && f.values.length ? `Pick one of ${f.values.length} values seen in training: ${f.values.join(", ")}.` : "Any value (the model's checker lists none).";
      input.addEventListener("input", () => flagUnseen(f, input));
    }
    parts.push(el("p", { id: hint, class: "hint", text: hintText }), el("p", { id: flag, class: "unseen-flag" }), el("p", { id: err, class: "error" }));
    box.append(el("div", { class: "field", "data-field": f.name }, ...parts));
  }
}
function flagUnseen(f, input) {
  const v = input.value.trim(), flag = $(fieldId(f.name) + "-unseen");
  flag.textContent = v && f.values && f.values.length && !f.values.includes(v)
    ? `? unseen: "${v}" was never seen in training; the model cannot know its wording, so check the report.` : "";
}
function formMeta() {
  const meta = {};
  for (const f of state.schema.fields) meta[f.name] = $(fieldId(f.name)).value;
  return meta;
}
function showFieldErrors(errs) {
  let first = null;
  for (const f of state.schema.fields) {
    const input = $(fieldId(f.name)), msg = errs[f.name] || "";
    $(fieldId(f.name) + "-error").textContent = msg ? "✗ " + msg : "";
    if (msg) { input.setAttribute("aria-invalid", "true"); first = first || input; } else input.removeAttribute("aria-invalid");
  }
  if (first) first.focus();
}

async function generate(ev) {
  ev.preventDefault();
  const btn = $("generate");
  btn.disabled = true; setStatus("form-status", "Generating…");
  const t0 = performance.now();
  try {
    const d = await post("api/draft", { meta: formMeta() });
    showFieldErrors({});
    state.draft = d;
    showReview(d.input, d.report, d.html, d.unseen || []);
    setStatus("form-status", `Report ready in ${Math.round(performance.now() - t0)} ms.`);
    document.body.dataset.lastDraftMs = String(Math.round(performance.now() - t0));
  } catch (e) {
    if (e.body && e.body.field_errors && Object.keys(e.body.field_errors).length) {
      showFieldErrors(e.body.field_errors);
      setStatus("form-status", "✗ Fix the marked field(s): " + e.message, "error");
    } else setStatus("form-status", "✗ " + e.message, "error");
  } finally { btn.disabled = false; }
}

// ---- review: the marked report, edits checked again, approve or reject ----
function setReportHtml(html) {
  // report_html's markup, escaped by the service; parsed inertly, scripts dropped as a second guard. Its own <style>
  // block is left out: the page's Content-Security-Policy allows no inline style, and desk.css has the same rules.
  const doc = new DOMParser().parseFromString(html.replace(/<style[^>]*>[\s\S]*?<\/style>/gi, ""), "text/html");  // (parsing it would break the policy)
  doc.querySelectorAll("script, style").forEach((s) => s.remove());
  $("report-view").replaceChildren(...doc.body.childNodes);
}
function showReview(input, report, html, unseen) {
  $("review-section").hidden = false;
  $("review-input").textContent = input;
  $("report-edit").value = report;
  $("review-note").value = "";
  setReportHtml(html);
  const u = $("unseen-line");
  u.hidden = !unseen.length;
  u.textContent = unseen.length ? `? unseen: ${unseen.join(", ")} never seen in training: check how the report words it.` : "";
  setStatus("check-status", ""); setStatus("review-status", "");
  state.review = { input, generated: report };
  $("approve").disabled = $("reject").disabled = false;
}
async function recheck() {
  if (!state.review) return;
  const seq = ++state.checkSeq;
  setStatus("check-status", "Checking…");
  try {
    const d = await post("api/check", { input: state.review.input, report: $("report-edit").value });
    if (seq !== state.checkSeq) return;  // a newer edit is being checked
    setReportHtml(d.html);
    const ok = d.facts ? d.facts.ok : null;
    setStatus("check-status", ok === null ? "? not checked" : ok ? "✓ all facts check" : `✗ ${d.facts.problems.length} problem(s): ${d.facts.problems.join("; ")}`, ok ? "ok" : "error");
  } catch (e) { if (seq === state.checkSeq) setStatus("check-status", "✗ " + e.message, "error"); }
}
function requestId() {  // 32 hex digits; crypto.getRandomValues works on plain http too (randomUUID does not)
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}
function showSignedIn() {  // the user of this tab's key: every decision is stored under this name, whatever a request says
  $("signed-in").textContent = state.me ? `${state.me.name} (${state.me.role})` : "unknown";
}
async function decide(decision) {
  if (!state.review) return;
  const name = state.me ? state.me.name : "you";
  $("approve").disabled = $("reject").disabled = true;
  setStatus("review-status", "Saving…");
  const body = { input: state.review.input, generated: state.review.generated, final: $("report-edit").value,
                 decision, note: $("review-note").value };
  const key = JSON.stringify(body);  // a retry of the same decision keeps its request_id, so it is stored once
  if (!state.review.sent || state.review.sent.key !== key) state.review.sent = { key, id: requestId() };
  body.request_id = state.review.sent.id;
  try {
    const d = await post("api/reviews", body);
    setStatus("review-status", `${decision === "approved" ? "✓ Approved" : "✗ Rejected"} and saved (review #${d.id}) by ${name}.`, "ok");
  } catch (e) {
    $("approve").disabled = $("reject").disabled = false;
    const why = !(e instanceof ApiError) ? "✗ No answer from the service: the decision may not be saved." :
                e.status === 404 ? "✗ Not saved: this service does not store reviews." : "✗ Not saved: " + e.message;
    setStatus("review-status", why + " Try again: the same decision is stored once.", "error");
  }
}

// ---- batch: upload, progress, table, filter, download ----
async function runBatch(ev) {
  ev.preventDefault();
  const file = $("batch-file").files[0], err = $("batch-error"), lim = state.schema.limits;
  err.hidden = true; err.textContent = "";
  const fail = (msg) => { err.textContent = "✗ " + msg; err.hidden = false; $("batch-file").setAttribute("aria-invalid", "true"); };
  $("batch-file").removeAttribute("aria-invalid");
  if (!file) return fail("Choose a CSV or JSONL file first.");
  if (file.size > lim.upload_bytes) return fail(`${file.name} is ${file.size.toLocaleString("en")} bytes, over the upload limit of ${lim.upload_bytes.toLocaleString("en")} bytes; split the file.`);
  $("run-batch").disabled = true;
  $("batch-results").hidden = true;
  try {
    const job = await json("api/batch?filename=" + encodeURIComponent(file.name), { method: "POST", body: file,
                                                                                    headers: { "Content-Type": "application/octet-stream" } });
    state.job = job.job;
    $("batch-progress-box").hidden = false;
    $("batch-progress").max = job.total; $("batch-progress").value = 0;
    for (;;) {
      const s = await json("api/batch/" + job.job);
      $("batch-progress").value = s.done;
      $("batch-count").textContent = `${s.done} of ${s.total} reports`;
      if (s.rows) { showBatch(s); break; }
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) { fail(e.message); }
  finally { $("run-batch").disabled = false; }
}
function showBatch(s) {
  state.rows = s.rows;
  const bad = s.rows.filter((r) => r.ok === false).length;
  $("batch-summary").textContent = `${s.rows.length} reports in ${(s.seconds || 0).toFixed(1)} s: ${s.rows.length - bad} pass the fact check, ${bad} fail.` +
    (s.error ? " ✗ " + s.error : "");
  $("batch-results").hidden = false;
  renderTable();
}
function verdictCell(r) {
  if (r.ok === null) return el("td", {}, el("span", { class: "tag", text: "? not checked" }));
  const td = el("td", {}, el("span", { class: "tag " + (r.ok ? "tag-ok" : "tag-fail"), text: r.ok ? "✓ ok" : "✗ failing" }));
  if (!r.ok) td.append(el("div", { class: "hint", text: r.problems.join("; ") }));
  return td;
}
function renderTable() {
  const only = $("only-failing").checked, body = $("batch-table").tBodies[0];
  body.replaceChildren();
  for (const r of state.rows) {
    if (only && r.ok !== false) continue;
    const btn = el("button", { type: "button", class: "secondary", text: "Review" });
    btn.setAttribute("aria-label", `Review the report of line ${r.line}`);
    btn.addEventListener("click", async () => {
      showReview(r.input, r.report, "", []);
      await recheck();
      $("review-h").focus();
    });
    body.append(el("tr", { "data-ok": String(r.ok) }, el("td", { text: String(r.line) }), el("td", { class: "input", text: r.input }),
                   el("td", { text: r.report }), verdictCell(r), el("td", {}, btn)));
  }
}
async function download(format) {
  if (!state.job) return;
  const failing = $("only-failing").checked ? "&failing=true" : "";
  try {
    const res = await api(`api/batch/${state.job}/download?format=${format}${failing}`);
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    const cd = res.headers.get("Content-Disposition") || "", star = /filename\*=UTF-8''([^;]+)/.exec(cd);
    const name = star ? decodeURIComponent(star[1]) : (/filename="([^"]+)"/.exec(cd) || [])[1] || `reports.${format}`;
    const url = URL.createObjectURL(await res.blob());
    const a = el("a", { href: url, download: name });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) { $("batch-summary").textContent = "✗ Download failed: " + e.message; }
}

// ---- start ----
async function start() {
  $("claim-form").addEventListener("submit", generate);
  $("claim-form").addEventListener("reset", () => setTimeout(() => { showFieldErrors({}); for (const f of state.schema.fields) if (f.kind === "category") flagUnseen(f, $(fieldId(f.name))); }, 0));
  $("report-edit").addEventListener("input", () => { clearTimeout(state.checkTimer); state.checkTimer = setTimeout(recheck, 300); });
  $("approve").addEventListener("click", () => decide("approved"));
  $("reject").addEventListener("click", () => decide("rejected"));
  $("batch-form").addEventListener("submit", runBatch);
  $("only-failing").addEventListener("change", renderTable);
  $("download-csv").addEventListener("click", () => download("csv"));
  $("download-jsonl").addEventListener("click", () => download("jsonl"));
  try {
    state.schema = await json("api/schema");
    try { state.me = await json("api/me"); } catch (e) { state.me = null; }
    showSignedIn();
    buildForm(state.schema);
    const s = state.schema;
    $("model-line").textContent = `Model: ${s.model} · fingerprint ${String(s.fingerprint).slice(0, 12)}` +
      (s.checked ? "" : " · no fact checker: reports are not checked");
    $("batch-limits").textContent = `Up to ${s.limits.rows.toLocaleString("en")} claims and ${(s.limits.upload_bytes / 1e6).toFixed(1)} MB per file.`;
    document.body.dataset.ready = "true";
  } catch (e) { if (e.status !== 401) showPageError("✗ Could not load the model's schema: " + e.message); }  // a refusal says so itself
}
document.addEventListener("DOMContentLoaded", start);
})();
