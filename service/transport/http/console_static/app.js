// tlserve console: reads /ui/api/* and calls POST /classify (and POST /explain for the overlays).
// Plain DOM, no framework, nothing from outside.
"use strict";

const MODELS_EVERY_MS = 5000;
const STATS_EVERY_MS = 3000;
const TOKEN_KEY = "tlserve.token";
const GALLERY_ROWS = 20;
const REVIEW_PAGE = 24;  // captures per page of the review

const state = {
  models: [],          // last /ui/api/models answer
  selected: null,      // {model, version} picked in the models table (or in Try it): its report is shown
  tryVersion: "",      // the version Try it calls; "" = the newest available
  reportShown: "",     // "model/version" whose report is on screen
  objectUrls: [],      // blob: URLs of the report on screen, released when it changes
  tryRun: 0,           // counts the Try it calls: a late /explain answer for earlier images is dropped
  review: { started: false, offset: 0, total: 0, urls: [] },  // the review's page and the blob: URLs of its images
};

// ---------------------------------------------------------------- small helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    // Styles through the CSSOM: the page's Content-Security-Policy refuses inline style attributes.
    else if (key === "style") for (const [prop, v] of Object.entries(value)) node.style.setProperty(prop, v);
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const $ = (id) => document.getElementById(id);
const ms = (seconds) => (seconds === null || seconds === undefined ? "–" : `${(seconds * 1000).toFixed(1)} ms`);
const fixed = (value, digits) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

// ---------------------------------------------------------------- auth: a bearer token when the server asks
let tokenPrompt = null;  // one pending prompt shared by every call that got a 401

function askForToken() {
  if (!tokenPrompt) {
    tokenPrompt = new Promise((resolve) => {
      const dialog = $("token-dialog");
      const form = $("token-form");
      const submit = (event) => {
        event.preventDefault();
        const token = $("token-input").value.trim();
        if (!token) return;
        sessionStorage.setItem(TOKEN_KEY, token);
        form.removeEventListener("submit", submit);
        dialog.close();
        $("forget-token").hidden = false;
        tokenPrompt = null;
        resolve();
      };
      form.addEventListener("submit", submit);
      $("token-input").value = "";
      if (!dialog.open) dialog.showModal();
    });
  }
  return tokenPrompt;
}

// Every call goes through here: the token (if any) is sent, and a 401 asks for one and tries again.
async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    sessionStorage.removeItem(TOKEN_KEY);
    await askForToken();
  }
}

async function apiJson(path, options) {
  const response = await api(path, options);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    const message = body && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new Error(message);
  }
  return body;
}

// ---------------------------------------------------------------- models and versions
function newestAvailable(model) {
  const available = model.versions.filter((v) => v.state === "AVAILABLE");
  return available.length ? available[0] : null;  // the API lists newest first
}

function findVersion(modelName, version) {
  const model = state.models.find((m) => m.name === modelName);
  return model ? model.versions.find((v) => v.version === version) || null : null;
}

function labelsOf(model, version) {
  return Object.entries(model.version_labels).filter(([, v]) => String(v) === version).map(([label]) => label);
}

function batchingText(b) {
  if (!b) return "–";
  const sizes = b.allowed_batch_sizes.length ? `, sizes ${b.allowed_batch_sizes.join("/")}` : "";
  return `max ${b.max_batch_size}, ${b.batch_timeout_ms} ms, queue ${b.max_queue}${sizes}`;
}

function renderModels() {
  const container = $("models");
  container.replaceChildren();
  if (!state.models.length) {
    container.append(el("p", { class: "muted", text: "No models in the repository." }));
    return;
  }
  for (const model of state.models) {
    const rows = model.versions.map((v) => {
      const selected = state.selected && state.selected.model === model.name && state.selected.version === v.version;
      const classes = v.classes ? `${v.classes.length}: ${v.classes.slice(0, 10).join(", ")}${v.classes.length > 10 ? ", …" : ""}` : "–";
      return el("tr", {
        class: `version${selected ? " selected" : ""}`, "data-model": model.name, "data-version": v.version,
        "data-state": v.state, title: "show this version's report and use it in Try it",
        onclick: () => selectVersion(model.name, v.version),
      },
      el("td", { text: v.version }),
      el("td", {}, el("span", { class: `state state-${v.state.toLowerCase()}${v.reason ? " state-failed" : ""}`,
        title: `${v.state} since ${new Date(v.since * 1000).toLocaleString()}`, text: v.reason ? "FAILED" : v.state })),
      el("td", { class: "reason", text: v.reason || "" }),
      el("td", { text: labelsOf(model, v.version).join(", ") }),
      el("td", { text: classes }),
      el("td", { text: batchingText(v.batching) }),
      el("td", { text: v.report.includes("report.json") ? "yes" : "–" }));
    });
    container.append(el("div", { class: "model", "data-model": model.name },
      el("h3", {}, model.name, " ", el("span", { class: model.ready ? "ok" : "bad", text: model.ready ? "serving" : "not serving" })),
      el("table", { class: "versions" },
        el("thead", {}, el("tr", {}, ["version", "state", "reason", "labels", "classes", "batching", "report"].map((h) => el("th", { text: h })))),
        el("tbody", {}, rows.length ? rows : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "no version found" }))]))));
  }
}

// Options are replaced only when they change, so a refresh never closes a list the user has open.
function setOptions(select, options, keep) {
  const wanted = options.map(([value, text]) => `${value}\t${text}`).join("\n");
  if (select.dataset.options !== wanted) {
    select.replaceChildren(...options.map(([value, text]) => el("option", { value, text })));
    select.dataset.options = wanted;
  }
  if (options.some(([value]) => value === keep)) select.value = keep;
}

function renderTrySelectors() {
  const keep = state.selected ? state.selected.model : $("try-model").value;
  setOptions($("try-model"), state.models.map((m) => [m.name, m.name]), keep);
  renderVersionSelect();
}

function renderVersionSelect() {
  const model = state.models.find((m) => m.name === $("try-model").value);
  const available = model ? model.versions.filter((v) => v.state === "AVAILABLE") : [];
  setOptions($("try-version"), [["", "newest available"], ...available.map((v) => [v.version, v.version])],
    state.tryVersion);
}

async function refreshModels() {
  try {
    const body = await apiJson("api/models");
    state.models = body.models;
    $("models-error").hidden = true;
    if (!state.selected) {
      // Start on the first model's newest available version, so the report shows without a click.
      const first = state.models.find(newestAvailable);
      if (first) state.selected = { model: first.name, version: newestAvailable(first).version };
    }
    renderModels();
    renderTrySelectors();
    await showReport();
    $("refresh-status").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    $("models-error").textContent = `Could not read the models: ${error.message}`;
    $("models-error").hidden = false;
  }
  // The review loads once the models are known (their classes are its label choices), then on demand only
  // (filter, paging, refresh, after a review): a timer would replace the cards under a person typing a label.
  if (!state.review.started) {
    state.review.started = true;
    refreshCaptures();
  }
}

function selectVersion(model, version) {
  state.selected = { model, version };
  state.tryVersion = findVersion(model, version) && findVersion(model, version).state === "AVAILABLE" ? version : "";
  renderModels();
  renderTrySelectors();
  showReport();
}

// ---------------------------------------------------------------- live figures
async function refreshStats() {
  let body;
  try {
    body = await apiJson("api/stats");
  } catch (error) {
    $("stats").tBodies[0].replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "error", text: error.message })));
    return;
  }
  const rows = Object.entries(body.models).map(([name, f]) => {
    const errors = Object.entries(f.errors).map(([code, n]) => `${code}: ${n}`).join(", ");
    return el("tr", { "data-model": name },
      el("td", { text: name }),
      el("td", { class: "num", text: fixed(f.request_rate, 2) }),
      el("td", { class: "num", text: ms(f.p50_s) }),
      el("td", { class: "num", text: ms(f.p99_s) }),
      el("td", { class: "num", text: fixed(f.mean_batch_size, 1) }),
      el("td", { class: "num", text: f.queue_depth }),
      el("td", { class: errors ? "bad" : "muted", text: errors || "none" }));
  });
  $("stats").tBodies[0].replaceChildren(...(rows.length ? rows
    : [el("tr", {}, el("td", { colspan: 7, class: "muted", text: "no requests yet" }))]));
}

// ---------------------------------------------------------------- predictions and drift
const share = (value) => (value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)}%`);

function shareCell(cls, value) {
  return el("td", { class: `share ${cls}` },
    el("span", { class: "bar" }, el("span", { style: { width: `${((value || 0) * 100).toFixed(1)}%` } })),
    el("span", { class: "score", text: share(value) }));
}

function predictionsBlock(model, version, p) {
  const drift = p.drift
    ? `class drift ${fixed(p.drift.class, 3)}, score drift ${fixed(p.drift.score, 3)} (PSI; above 0.2: shifted)`
    : (p.reference ? `drift once the window is full (${p.window} of ${p.window_size})`
      : "no drift: this export carries no reference");
  const rows = p.classes.map((name, i) => el("tr", { "data-class": name },
    el("td", { text: name }),
    shareCell("live", p.live[i]),
    p.reference ? shareCell("reference", p.reference[i]) : el("td", { class: "muted", text: "–" })));
  return el("div", { class: "predictions", "data-model": model, "data-version": version },
    el("h3", { text: `${model} version ${version}` },
      el("span", { class: "muted window", text: ` last ${p.window} predictions` })),
    el("p", { class: p.drift && p.drift.class > 0.2 ? "drift bad" : "drift muted", text: drift }),
    el("table", {},
      el("thead", {}, el("tr", {}, el("th", { text: "class" }), el("th", { text: "recent" }),
        el("th", { text: "test split" }))),
      el("tbody", {}, ...rows)));
}

async function refreshPredictions() {
  let body;
  try {
    body = await apiJson("api/predictions");
  } catch (error) {
    $("predictions").replaceChildren(el("p", { class: "error", text: error.message }));
    return;
  }
  const blocks = Object.entries(body.models).flatMap(([model, versions]) =>
    Object.entries(versions).map(([version, p]) => predictionsBlock(model, version, p)));
  $("predictions").replaceChildren(...(blocks.length ? blocks
    : [el("p", { class: "muted", text: "no predictions yet" })]));
}

// ---------------------------------------------------------------- try it
async function classify(files) {
  const images = [...files].filter((f) => f.type.startsWith("image/") || f.type === "");
  if (!images.length) {
    $("try-status").textContent = "Pick or drop image files.";
    return;
  }
  const form = new FormData();
  form.append("model", $("try-model").value);
  if ($("try-version").value) form.append("version", $("try-version").value);
  form.append("top_k", $("try-top-k").value || "3");
  for (const file of images) form.append("images", file, file.name);
  $("try-status").textContent = `classifying ${images.length} image(s)…`;
  $("try-status").className = "muted";
  const started = performance.now();
  const run = ++state.tryRun;
  let body;
  try {
    body = await apiJson("../classify", { method: "POST", body: form });
  } catch (error) {
    $("try-status").textContent = `Error: ${error.message}`;
    $("try-status").className = "error";
    return;
  }
  const latency = performance.now() - started;
  $("try-status").textContent = `${body.model} version ${body.version}: ${images.length} image(s) in ${latency.toFixed(1)} ms`;
  $("try-status").className = "";
  $("try-status").dataset.latencyMs = latency.toFixed(1);
  for (const url of state.tryUrls || []) URL.revokeObjectURL(url);
  state.tryUrls = images.map((f) => URL.createObjectURL(f));
  $("try-results").replaceChildren(...body.predictions.map((labels, i) => el("div", { class: "result" },
    el("img", { class: "picture", src: state.tryUrls[i], alt: images[i].name }),
    el("img", { class: "overlay", alt: "", hidden: true }),
    el("div", {},
      el("div", { class: "file", text: images[i].name }),
      el("ol", { class: "labels" }, labels.map((p, rank) => el("li", { class: rank === 0 ? "top" : "" },
        el("span", { class: "label", text: p.label }),
        el("span", { class: "bar" }, el("span", { style: { width: `${Math.max(0, Math.min(100, p.score * 100)).toFixed(1)}%` } })),
        el("span", { class: "score", text: p.score.toFixed(3) }))))))));
  const served = findVersion(body.model, body.version);
  if (served && served.explain) await explain(body.model, body.version, images, run);
}

// The Grad-CAM overlay of each image, from POST /explain, for a version whose export has an explain signature
// (the models API says which: an older export has none, and is never asked).
async function explain(model, version, images, run) {
  const encoded = await Promise.all(images.map(base64Of));
  let body;
  try {
    body = await apiJson("../explain", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ model, version, images: encoded }),
    });
  } catch (error) {
    if (run === state.tryRun) $("try-status").append(el("span", { class: "error", text: ` (no overlay: ${error.message})` }));
    return;
  }
  if (run !== state.tryRun) return;  // other images were tried meanwhile: these overlays are not theirs
  const overlays = $("try-results").querySelectorAll(".result img.overlay");
  body.explanations.forEach((e, i) => {
    if (!overlays[i]) return;
    overlays[i].src = `data:image/png;base64,${e.overlay}`;
    overlays[i].alt = overlays[i].title = `Grad-CAM of ${e.label} (${e.score.toFixed(3)})`;
    overlays[i].hidden = false;
  });
}

function base64Of(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result.slice(reader.result.indexOf(",") + 1));  // after "data:...;base64,"
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

function setUpTryIt() {
  $("try-form").addEventListener("submit", (event) => event.preventDefault());
  // Choosing a model or a version in Try it selects it in the models table too (and shows its report).
  $("try-model").addEventListener("change", () => {
    const model = state.models.find((m) => m.name === $("try-model").value);
    const shown = model && (newestAvailable(model) || model.versions[0]);
    if (model) selectVersion(model.name, shown ? shown.version : "");
    state.tryVersion = "";
    renderVersionSelect();
  });
  $("try-version").addEventListener("change", () => {
    const version = $("try-version").value;
    if (version) selectVersion($("try-model").value, version);
    state.tryVersion = version;
  });
  $("try-files").addEventListener("change", (event) => {
    classify(event.target.files);
    event.target.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    classify(event.dataTransfer.files);
  });
}

// ---------------------------------------------------------------- review of captured images
// Class names a person can pick for a capture of `modelName`: the model's classes (newest version listed first)
// and the capture's own predictions; any other name can be typed, since retraining can add a class.
function classChoices(modelName, capture) {
  const model = state.models.find((m) => m.name === modelName);
  const names = new Set();
  for (const v of model ? model.versions : []) for (const c of v.classes || []) names.add(c);
  for (const p of capture.predictions || []) names.add(p.label);
  return [...names];
}

function captureCard(capture, index) {
  const listId = `review-classes-${index}`;
  const status = el("p", { class: "review-status muted" });
  const input = el("input", { class: "label", list: listId, placeholder: "true label", "aria-label": "true label",
    maxlength: 255, autocomplete: "off" });
  const review = async (body) => {
    status.textContent = "saving…";
    status.className = "review-status muted";
    try {
      await apiJson(`api/captures/${encodeURIComponent(capture.id)}`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
    } catch (error) {
      status.textContent = `Error: ${error.message}`;
      status.className = "review-status error";
      return;
    }
    await refreshCaptures();
  };
  const img = el("img", { alt: `capture ${capture.id}` });
  api(`api/captures/${encodeURIComponent(capture.id)}/image`).then(async (response) => {
    if (!response.ok) throw new Error(`image: ${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    state.review.urls.push(url);
    img.src = url;
  }).catch((error) => { status.textContent = error.message; status.className = "review-status error"; });
  return el("div", { class: "capture", "data-id": capture.id, "data-model": capture.model },
    img,
    el("div", {},
      el("div", { class: "meta", text: `${capture.model} version ${capture.version} · ${capture.time} · ${capture.transport} ${capture.api} · ${capture.reason}` }),
      el("ol", { class: "labels" }, (capture.predictions || []).map((p, rank) => el("li", { class: rank === 0 ? "top" : "" },
        el("span", { class: "label", text: p.label }),
        el("span", { class: "bar" }, el("span", { style: { width: `${Math.max(0, Math.min(100, p.score * 100)).toFixed(1)}%` } })),
        el("span", { class: "score", text: p.score.toFixed(3) })))),
      el("datalist", { id: listId }, classChoices(capture.model, capture).map((c) => el("option", { value: c }))),
      el("form", {
        onsubmit: (event) => {
          event.preventDefault();
          const label = input.value.trim();
          if (label) review({ label });
        },
      }, input,
      el("button", { type: "submit", class: "label-button", text: "label" }),
      el("button", { type: "button", class: "discard-button", text: "discard", onclick: () => review({ discard: true }) })),
      status));
}

async function refreshCaptures() {
  const model = $("review-model").value;
  const query = new URLSearchParams({ limit: REVIEW_PAGE, offset: state.review.offset });
  if (model) query.set("model", model);
  let body;
  try {
    body = await apiJson(`api/captures?${query}`);
  } catch (error) {
    $("review-error").textContent = `Could not read the captures: ${error.message}`;
    $("review-error").hidden = false;
    return;
  }
  $("review-error").hidden = true;
  $("review-off").hidden = body.enabled;
  $("review-controls").hidden = !body.enabled;
  if (body.total && state.review.offset >= body.total) {  // the last page was emptied by reviews: step back
    state.review.offset = Math.max(0, Math.floor((body.total - 1) / REVIEW_PAGE) * REVIEW_PAGE);
    return refreshCaptures();
  }
  state.review.total = body.total;
  setOptions($("review-model"), [["", "all models"], ...Object.entries(body.models).map(([m, n]) => [m, `${m} (${n})`])], model);
  const first = body.total ? state.review.offset + 1 : 0;
  $("review-summary").textContent = body.enabled
    ? `(${first}–${state.review.offset + body.captures.length} of ${body.total} pending, lowest top-1 score first)` : "";
  $("review-prev").disabled = state.review.offset === 0;
  $("review-next").disabled = state.review.offset + REVIEW_PAGE >= body.total;
  for (const url of state.review.urls) URL.revokeObjectURL(url);
  state.review.urls = [];
  $("captures").replaceChildren(...(body.captures.length ? body.captures.map(captureCard)
    : [el("p", { class: "muted", text: body.enabled ? "No pending captures." : "" })]));
}

function setUpReview() {
  $("review-model").addEventListener("change", () => { state.review.offset = 0; refreshCaptures(); });
  $("review-prev").addEventListener("click", () => {
    state.review.offset = Math.max(0, state.review.offset - REVIEW_PAGE);
    refreshCaptures();
  });
  $("review-next").addEventListener("click", () => { state.review.offset += REVIEW_PAGE; refreshCaptures(); });
  $("review-refresh").addEventListener("click", () => refreshCaptures());
}

// ---------------------------------------------------------------- the selected version's report
function reportPath(model, version, file) {
  return `api/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}/report/${encodeURIComponent(file)}`;
}

// Report files go through api() (so the token is sent) and reach the page as blob: URLs.
async function reportBlobUrl(model, version, file) {
  const response = await api(reportPath(model, version, file));
  if (!response.ok) throw new Error(`${file}: ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  state.objectUrls.push(url);
  return url;
}

function confusionTable(report) {
  const matrix = report.confusion_matrix;
  const top = Math.max(1, ...matrix.flat());
  return el("table", { class: "confusion" },
    el("thead", {}, el("tr", {}, el("th", { text: "true \\ predicted" }), report.classes.map((c) => el("th", { text: c })))),
    el("tbody", {}, matrix.map((row, i) => el("tr", {}, el("th", { text: report.classes[i] }),
      row.map((n, j) => el("td", {
        class: `num${i === j ? " diagonal" : n ? " off" : ""}`,
        style: { "--shade": (n / top).toFixed(3) }, text: n,
      }))))));
}

async function showReport() {
  const sel = state.selected;
  const key = sel ? `${sel.model}/${sel.version}` : "";
  const version = sel ? findVersion(sel.model, sel.version) : null;
  const files = version ? version.report : [];
  if (key === state.reportShown && $("report").dataset.files === files.join(",")) return;
  state.reportShown = key;
  for (const url of state.objectUrls) URL.revokeObjectURL(url);
  state.objectUrls = [];
  const box = $("report");
  box.dataset.files = files.join(",");
  $("report-title").textContent = sel ? `${sel.model} version ${sel.version}` : "";
  if (!sel || !files.includes("report.json")) {
    box.replaceChildren(el("p", { class: "muted", text: sel ? "This version has no evaluation report." : "Select a version." }));
    return;
  }
  let report;
  try {
    report = await apiJson(reportPath(sel.model, sel.version, "report.json"));
  } catch (error) {
    box.replaceChildren(el("p", { class: "error", text: `Could not read the report: ${error.message}` }));
    return;
  }
  if (state.reportShown !== key) return;  // another version was picked meanwhile
  const parts = [
    el("p", { class: "headline" },
      el("span", {}, "accuracy ", el("strong", { id: "report-accuracy", text: report.accuracy.toFixed(4) })),
      el("span", {}, "macro F1 ", el("strong", { text: report.macro_f1.toFixed(4) })),
      el("span", {}, "test images ", el("strong", { text: report.n })),
      el("span", {}, "misclassified ", el("strong", { text: report.misclassified.length }))),
  ];
  if (files.includes("report.html")) {
    parts.push(el("p", {}, el("a", {
      href: "#", id: "open-report-html",
      onclick: async (event) => {
        event.preventDefault();
        window.open(await reportBlobUrl(sel.model, sel.version, "report.html"), "_blank");
      },
      text: "open report.html (one self-contained file)",
    })));
  }
  const perClass = el("table", { class: "per-class" },
    el("thead", {}, el("tr", {}, ["class", "precision", "recall", "F1", "support"].map((h) => el("th", { text: h })))),
    el("tbody", {}, report.per_class.map((c) => el("tr", {},
      el("td", { text: c.label }), el("td", { class: "num", text: c.precision.toFixed(3) }),
      el("td", { class: "num", text: c.recall.toFixed(3) }), el("td", { class: "num", text: c.f1.toFixed(3) }),
      el("td", { class: "num", text: c.support })))));
  parts.push(el("div", { class: "report-grid" },
    el("div", {}, el("h3", { text: "Per class" }), perClass),
    el("div", {}, el("h3", { text: "Confusion matrix" }),
      el("p", { class: "muted", text: "rows: true class; columns: predicted" }), confusionTable(report))));
  parts.push(el("h3", { text: `Misclassified (${report.misclassified.length})` }));
  if (report.misclassified.length) {
    const gallery = el("div", { class: "gallery" });
    parts.push(gallery);
    parts.push(el("table", { class: "misclassified" },
      el("thead", {}, el("tr", {}, ["source", "true", "predicted", "score"].map((h) => el("th", { text: h })))),
      el("tbody", {}, report.misclassified.slice(0, GALLERY_ROWS).map((m) => el("tr", {},
        el("td", { text: m.source }), el("td", { text: m.true }), el("td", { text: m.predicted }),
        el("td", { class: "num", text: m.score.toFixed(3) }))))));
    if (files.includes("misclassified.png")) {
      reportBlobUrl(sel.model, sel.version, "misclassified.png")
        .then((url) => gallery.append(el("img", { src: url, alt: "misclassified test images" })))
        .catch((error) => gallery.append(el("p", { class: "error", text: error.message })));
    }
  } else {
    parts.push(el("p", { class: "muted", text: "No test image was misclassified." }));
  }
  box.replaceChildren(...parts);
}

// ---------------------------------------------------------------- start
function every(fn, intervalMs) {
  const tick = async () => {
    try {
      await fn();
    } finally {
      setTimeout(tick, intervalMs);
    }
  };
  tick();
}

document.addEventListener("DOMContentLoaded", () => {
  $("forget-token").hidden = !sessionStorage.getItem(TOKEN_KEY);
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    $("forget-token").hidden = true;
  });
  setUpTryIt();
  setUpReview();
  every(refreshModels, MODELS_EVERY_MS);

  every(refreshStats, STATS_EVERY_MS);
  every(refreshPredictions, STATS_EVERY_MS);
});
