/* medsight web page: sign in, upload (drag-and-drop, file picker, phone camera), the result with its
   heatmap (a detector's: its boxes drawn over the image as SVG, a score slider that hides boxes
   below it and recounts them per class), history with filters, reviews; English and Simplified
   Chinese. Plain DOM, no framework.
   Server data only ever reaches the page through textContent and element properties (never HTML),
   and nothing here needs an inline script or style, so the page runs under a strict CSP. */
"use strict";

(function () {
  const LANGS = ["en", "zh-CN"];
  const STORAGE_KEY = "medsight_lang";
  const PAGE_SIZE = 20;
  const REVIEW_ROLES = ["reviewer", "admin"];
  const PREDICT_ROLES = ["clinician"];

  const state = {
    lang: "en",
    catalogues: {},
    user: null,
    entitlement: null,
    role: null,
    csrf: null,
    models: [],
    current: null,
    busy: false,
    view: null,
    history: { offset: 0, total: 0, items: [], filters: {}, loaded: false },
  };

  const $ = (id) => document.getElementById(id);
  const messages = new Set(); // elements whose text is a translated message, re-rendered on switch

  // ---------------------------------------------------------------- language
  function matchLang(tag) {
    if (!tag) return null;
    const low = String(tag).trim().toLowerCase().replace(/_/g, "-");
    if (low === "en" || low.startsWith("en-")) return "en";
    if (low === "zh" || /^zh-(cn|sg|my|hans)\b/.test(low)) return "zh-CN";
    return null;
  }

  function storedLang() {
    try {
      return matchLang(window.localStorage.getItem(STORAGE_KEY));
    } catch (e) {
      return null; // storage disabled: the server's choice stands
    }
  }

  function initialLang() {
    return storedLang() || matchLang(document.documentElement.lang) ||
      (navigator.languages || []).map(matchLang).find(Boolean) || "en";
  }

  async function loadCatalogue(lang) {
    if (!state.catalogues[lang]) {
      const resp = await fetch("/static/i18n/" + lang + ".json", { credentials: "same-origin" });
      if (!resp.ok) throw new Error("catalogue " + lang + ": " + resp.status);
      state.catalogues[lang] = await resp.json();
    }
    return state.catalogues[lang];
  }

  function t(key, vars) {
    const words = state.catalogues[state.lang] || {};
    let text = words[key];
    if (text === undefined) text = (state.catalogues.en || {})[key];
    if (text === undefined) text = key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, (whole, name) =>
        Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole);
    }
    return text;
  }

  function applyStatic() {
    document.documentElement.lang = state.lang;
    document.title = t("app.title");
    document.querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.dataset.i18n);
    });
    document.querySelectorAll("[data-i18n-attr]").forEach((el) => {
      el.dataset.i18nAttr.split(";").forEach((pair) => {
        const [attr, key] = pair.split(":");
        if (attr && key) el.setAttribute(attr.trim(), t(key.trim()));
      });
    });
    $("lang-select").value = state.lang;
    messages.forEach((el) => renderMessage(el));
  }

  let langRequests = 0;
  let langPicks = 0; // languages the reader picked in the menu

  async function setLang(lang, remember) {
    const code = matchLang(lang) || "en";
    const request = ++langRequests;
    try {
      await loadCatalogue(code);
    } catch (e) {
      return; // keep the language we have rather than show keys
    }
    // the last choice wins: a catalogue that arrives late (the start's own language, fetched
    // while the user already picked another) must not switch the page back
    if (request !== langRequests) return;
    state.lang = code;
    if (remember) {
      try {
        window.localStorage.setItem(STORAGE_KEY, code);
      } catch (e) { /* storage disabled */ }
    }
    applyStatic();
    renderWho();
    renderModels();
    if (state.current) renderResult(state.current);
    if (state.history.loaded) renderHistory();
  }

  // ---------------------------------------------------------------- messages
  function say(el, key, vars) {
    if (!el) return;
    if (key === null) {
      el.textContent = "";
      el._msg = null;
      messages.delete(el);
      if (el.classList.contains("error")) el.hidden = true;
      return;
    }
    el._msg = { key: key, vars: vars || null };
    messages.add(el);
    renderMessage(el);
    el.hidden = false;
  }

  function renderMessage(el) {
    if (el._msg) el.textContent = t(el._msg.key, el._msg.vars || undefined);
  }

  function status(key, vars) {
    say($("status"), key, vars);
  }

  function sayError(el, key, err) {
    if (err && err.network) say(el, "upload.network");
    else say(el, key, { status: err ? err.status : "?", detail: err ? err.detail : "" });
  }

  // ---------------------------------------------------------------- formatting
  function pct(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return new Intl.NumberFormat(state.lang, { style: "percent", maximumFractionDigits: 1 }).format(value);
  }

  function num(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return new Intl.NumberFormat(state.lang, { maximumSignificantDigits: 3 }).format(value);
  }

  function when(iso) {
    if (!iso) return t("result.unknown");
    const d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    return new Intl.DateTimeFormat(state.lang, { dateStyle: "medium", timeStyle: "short" }).format(d);
  }

  function orUnknown(value) {
    return value === null || value === undefined || value === "" ? t("result.unknown") : String(value);
  }

  function labelText(label) {
    return label ? String(label) : t("result.no_label");
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  // ---------------------------------------------------------------- HTTP
  class ApiError extends Error {
    constructor(status, detail, network) {
      super(detail);
      this.status = status;
      this.detail = detail;
      this.network = Boolean(network);
    }
  }

  function detailOf(data, fallback) {
    if (data && typeof data.detail === "string") return data.detail;
    if (data && Array.isArray(data.detail)) {
      return data.detail.map((d) => (d && d.msg ? String(d.msg) : JSON.stringify(d))).join("; ");
    }
    return fallback || "";
  }

  async function api(method, path, body, options) {
    const opts = options || {};
    const headers = { Accept: "application/json" };
    let payload;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(body);
    }
    if (method !== "GET" && method !== "HEAD" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
    let resp;
    try {
      resp = await fetch(path, { method: method, headers: headers, body: payload,
        credentials: "same-origin", cache: "no-store" });
    } catch (e) {
      throw new ApiError(0, String(e), true);
    }
    let data = null;
    if ((resp.headers.get("content-type") || "").includes("json")) {
      try {
        data = await resp.json();
      } catch (e) {
        data = null;
      }
    }
    if (!resp.ok) {
      if (resp.status === 401 && !opts.allow401) sessionEnded();
      throw new ApiError(resp.status, detailOf(data, resp.statusText));
    }
    return data;
  }

  // ---------------------------------------------------------------- session
  function renderWho() {
    const who = $("who");
    if (!state.user) {
      who.hidden = true;
      who.textContent = "";
      return;
    }
    who.textContent = state.entitlement
      ? t("session.local", { entitlement: state.entitlement })
      : t("session.who", { user: state.user, role: t("role." + state.role) });
    who.hidden = false;
  }

  function startSession(data) {
    state.user = data.user;
    state.role = data.role;
    state.csrf = data.csrf_token;
    $("signin-view").hidden = true;
    $("app-view").hidden = false;
    const local = data.mode === "local";
    $("signout").hidden = local;  // the local app has no accounts to sign out of
    state.entitlement = local ? data.entitlement : null;
    const canPredict = PREDICT_ROLES.includes(state.role);
    $("tab-upload").hidden = !canPredict;
    $("new-upload").hidden = !canPredict;
    renderWho();
    loadModels();
    showView(canPredict ? "upload" : "history");
  }

  function clearPrivate() {
    state.user = state.role = state.csrf = state.entitlement = null;
    state.current = null;
    state.history = { offset: 0, total: 0, items: [], filters: {}, loaded: false };
    $("history-list").replaceChildren();
    $("reviews-list").replaceChildren();
    $("result-image").removeAttribute("src");
    $("result-heatmap").removeAttribute("src");
    $("result-boxes").replaceChildren();
    state.boxesOf = null;
    $("history-filters").reset();
    [$("upload-error"), $("history-error"), $("review-error"), $("history-summary")].forEach((n) => say(n, null));
  }

  function showSignin() {
    $("app-view").hidden = true;
    $("signout").hidden = true;
    $("signin-view").hidden = false;
    renderWho();
    $("username").focus();
  }

  function sessionEnded() {
    if (!state.user) return;
    clearPrivate();
    showSignin();
    status("status.session_ended");
  }

  async function signIn(event) {
    event.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    const error = $("signin-error");
    if (!username || !password) {
      say(error, "signin.missing");
      return;
    }
    say(error, null);
    const button = event.target.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const data = await api("POST", "/v1/session", { username: username, password: password }, { allow401: true });
      $("password").value = "";
      startSession(data);
      status("status.signed_in", { user: data.user });
    } catch (err) {
      if (err.status === 401) say(error, "signin.wrong");
      else sayError(error, "error.generic", err);
    } finally {
      button.disabled = false;
    }
  }

  async function signOut() {
    try {
      await api("DELETE", "/v1/session", undefined, { allow401: true });
    } catch (e) { /* the session is dropped here either way */ }
    clearPrivate();
    showSignin();
    status("status.signed_out");
  }

  // ---------------------------------------------------------------- models
  async function loadModels() {
    try {
      const data = await api("GET", "/v1/models");
      state.models = (data && data.models) || [];
    } catch (err) {
      state.models = [];
      sayError($("upload-error"), "error.generic", err);
    }
    renderModels();
  }

  function chosenModel() {
    if (state.models.length < 2) return null;
    return $("model-select").value || null;
  }

  function renderModels() {
    const select = $("model-select");
    const previous = select.value;
    select.replaceChildren();
    state.models.forEach((m) => {
      const option = el("option", null, m.name + " " + (m.version || ""));
      option.value = m.name;
      if (previous ? previous === m.name : m.default) option.selected = true;
      select.appendChild(option);
    });
    $("model-field").hidden = state.models.length < 2;
    renderModelInfo();

    const filter = $("f-model");
    const kept = filter.value;
    while (filter.options.length > 1) filter.remove(1);
    state.models.forEach((m) => {
      const option = el("option", null, m.name);
      option.value = m.name;
      filter.appendChild(option);
    });
    filter.value = kept;
    $("f-model").closest(".field").hidden = state.models.length < 2;

    const labels = new Set();
    state.models.forEach((m) => (m.classes || []).forEach((c) => labels.add(String(c))));
    $("label-options").replaceChildren(...[...labels].map((c) => {
      const option = el("option");
      option.value = c;
      return option;
    }));
  }

  function renderModelInfo() {
    const info = $("model-info");
    const name = $("model-select").value;
    const m = state.models.find((x) => x.name === name) || state.models.find((x) => x.default) || state.models[0];
    if (!m) {
      info.textContent = "";
      return;
    }
    const taskKey = "task." + m.task;
    info.textContent = t("upload.model_info", {
      name: m.name, version: m.version || "",
      task: t(taskKey) === taskKey ? orUnknown(m.task) : t(taskKey),
      modality: orUnknown(m.modality), classes: (m.classes || []).join(", "),
    });
  }

  // ---------------------------------------------------------------- upload
  function setBusy(busy) {
    state.busy = busy;
    $("camera-input").disabled = busy;
    $("file-input").disabled = busy;
    $("dropzone").classList.toggle("busy", busy);
    $("upload-view").setAttribute("aria-busy", busy ? "true" : "false");
  }

  function upload(file) {
    if (!file || state.busy) return;
    const error = $("upload-error");
    const progress = $("upload-progress");
    const bar = $("upload-progress-bar");
    const text = $("upload-progress-text");
    say(error, null);
    setBusy(true);
    progress.hidden = false;
    bar.value = 0;
    const name = file.name || "image";
    say(text, "upload.uploading", { name: name, percent: 0 });

    const form = new FormData();
    form.append("file", file, name);
    const model = chosenModel();
    if (model) form.append("model", model);

    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/predictions");
    xhr.setRequestHeader("Accept", "application/json");
    if (state.csrf) xhr.setRequestHeader("X-CSRF-Token", state.csrf);
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.round((100 * e.loaded) / e.total);
      bar.value = percent;
      say(text, "upload.uploading", { name: name, percent: percent });
    };
    xhr.upload.onload = () => {
      bar.removeAttribute("value"); // indeterminate while the server analyses
      say(text, "upload.analysing", { name: name });
      status("upload.analysing", { name: name });
    };
    const finish = () => {
      setBusy(false);
      progress.hidden = true;
      $("camera-input").value = "";
      $("file-input").value = "";
    };
    xhr.onload = () => {
      finish();
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) {
        data = null;
      }
      if (xhr.status === 200 || xhr.status === 201) {
        state.history.loaded = false; // a new row: reload when next shown
        showResult(data);
        status("upload.done", { label: labelText(data.label) });
        return;
      }
      if (xhr.status === 401) {
        sessionEnded();
        return;
      }
      const err = new ApiError(xhr.status, detailOf(data, xhr.statusText));
      sayError(error, "upload.failed", err);
      status(null);
    };
    xhr.onerror = () => {
      finish();
      sayError(error, "upload.failed", new ApiError(0, "", true));
      status(null);
    };
    xhr.send(form);
  }

  function onPicked(event) {
    const files = event.target.files;
    if (files && files.length) upload(files[0]);
  }

  function setupDrop() {
    const zone = $("dropzone");
    ["dragenter", "dragover"].forEach((type) => zone.addEventListener(type, (e) => {
      e.preventDefault();
      if (!state.busy) zone.classList.add("over");
    }));
    ["dragleave", "dragend"].forEach((type) => zone.addEventListener(type, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("over");
      const files = e.dataTransfer ? e.dataTransfer.files : null;
      if (!files || !files.length) return;
      upload(files[0]);
      if (files.length > 1) status("upload.one_file");
    });
    // a file dropped beside the zone must not replace the page
    window.addEventListener("dragover", (e) => e.preventDefault());
    window.addEventListener("drop", (e) => e.preventDefault());
  }

  // ---------------------------------------------------------------- result
  function withLang(url) {
    return url + (url.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(state.lang);
  }

  function safeUrl(url) {
    // only this service's own paths become image sources or links
    return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : null;
  }

  function studyLink(url) {
    // a PACS study link: only an absolute http(s) URL becomes a link (never javascript: or data:)
    if (typeof url !== "string" || !url) return null;
    try {
      const parsed = new URL(url);
      return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
    } catch (err) {
      return null;
    }
  }

  function pacsSource(r) {
    const source = r && r.source;
    return source && typeof source === "object" && source.kind === "pacs" ? source : null;
  }

  function pacsBadge() {
    const badge = el("span", "badge badge-pacs", t("result.source_badge"));
    badge.title = t("result.source_badge_title");
    return badge;
  }

  function renderSource(r) {
    const source = pacsSource(r);
    const box = $("result-source");
    box.hidden = !source;
    const link = $("result-study-link");
    const href = source ? studyLink(source.study_url) : null;
    link.hidden = !href;
    if (href) link.href = href;
    else link.removeAttribute("href");
    if (!source) return;
    $("result-source").querySelector(".badge").title = t("result.source_badge_title");
    const vars = { pacs: orUnknown(source.pacs), series: orUnknown(source.series_uid), instance: source.sop_uid };
    $("result-source-details").textContent = source.sop_uid
      ? t("result.source_details", vars) : t("result.source_details_series", vars);
    const results = (source.results || []).map((w) => (w.name || w.sop_class) + " " + orUnknown(w.sop_instance));
    $("result-source-results").textContent = results.length
      ? t("result.source_results", { results: results.join("; ") }) : t("result.source_no_results");
  }

  function showResult(record) {
    state.current = record;
    renderResult(record);
    showView("result");
  }

  function renderResult(r) {
    const input = r.input || {};
    const image = $("result-image");
    const heat = $("result-heatmap");
    const imageUrl = safeUrl(r.image_url);
    const detection = Array.isArray(r.boxes);
    const heatUrl = detection ? null : safeUrl(r.heatmap_url);
    if (imageUrl && image.getAttribute("src") !== imageUrl) image.src = imageUrl;
    if (heatUrl && heat.getAttribute("src") !== heatUrl) heat.src = heatUrl;
    heat.hidden = !heatUrl;
    $("opacity").closest(".field").hidden = !heatUrl;
    $("heatmap-help").hidden = !heatUrl;
    applyOpacity();
    if (detection && state.boxesOf !== r.id) {  // a new detection starts at the model's threshold
      state.boxesOf = r.id;
      $("score-threshold").value = String(r.threshold ?? 0.5);
    }
    renderBoxes();

    $("result-label").textContent = labelText(r.label);
    $("result-confidence").textContent = pct(r.confidence);
    $("result-threshold").textContent = r.threshold === null || r.threshold === undefined
      ? t("result.threshold_none") : num(r.threshold);
    const thresholdName = $("result-threshold").previousElementSibling;  // a detector counts at it
    thresholdName.dataset.i18n = detection ? "result.count_threshold" : "result.threshold";
    thresholdName.textContent = t(thresholdName.dataset.i18n);
    const model = r.model || {};
    $("result-model").textContent = [model.name, model.version].filter(Boolean).join(" ") || t("result.unknown");
    const shape = Array.isArray(input.shape) ? input.shape.join(" × ") : input.shape;
    $("result-input").textContent = t("result.input_summary", {
      format: orUnknown(input.format), modality: orUnknown(input.modality), shape: orUnknown(shape),
    });
    $("result-pseudonym").textContent = orUnknown(input.patient_pseudonym ?? r.patient_pseudonym);
    $("result-study-date").textContent = orUnknown(input.study_date ?? r.study_date);
    $("result-created").textContent = when(r.created);
    const dup = $("result-duplicate");
    dup.hidden = !r.duplicate_of;
    dup.textContent = r.duplicate_of ? t("result.duplicate", { id: r.duplicate_of }) : "";
    renderSource(r);

    $("probabilities-box").hidden = detection;
    const bars = $("result-probabilities");
    const entries = Object.entries(r.probabilities || {}).sort((a, b) => b[1] - a[1]);
    const chosen = new Set(String(r.label || "").split("+"));
    bars.replaceChildren(...entries.map(([name, p]) => {
      const li = el("li", chosen.has(name) ? "bar-row chosen" : "bar-row");
      li.appendChild(el("span", "bar-name", name));
      const track = el("span", "bar-track");
      track.setAttribute("aria-hidden", "true");
      const fill = el("span", "bar-fill");
      fill.style.width = Math.max(0, Math.min(100, 100 * Number(p))).toFixed(1) + "%";
      track.appendChild(fill);
      li.appendChild(track);
      li.appendChild(el("span", "bar-value", pct(Number(p))));
      return li;
    }));

    const warnings = r.warnings || [];
    $("result-warnings-box").hidden = warnings.length === 0;
    $("result-warnings").replaceChildren(...warnings.map((w) => el("li", null, w)));

    const report = $("report-link");
    const reportUrl = safeUrl(r.report_url);
    report.hidden = !reportUrl;
    if (reportUrl) report.href = withLang(reportUrl);

    renderReviews(r);
  }

  function renderBoxes() {
    // a detector's boxes drawn as SVG over the image (text as text only), those scoring below
    // the slider left out, and the counts per class at the slider's value
    const r = state.current;
    const svg = $("result-boxes");
    const detection = Boolean(r) && Array.isArray(r.boxes);
    svg.toggleAttribute("hidden", !detection);  // an SVG element has no `hidden` property
    $("score-field").hidden = !detection;
    $("counts-box").hidden = !detection;
    if (!detection) {
      svg.replaceChildren();
      svg.dataset.visible = "0";
      return;
    }
    const threshold = Number($("score-threshold").value);
    $("score-value").textContent = threshold.toFixed(2);
    const shape = (r.input || {}).shape || [];
    const w = Number(shape[shape.length - 1]);
    const h = Number(shape[shape.length - 2]);
    if (w > 0 && h > 0) svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    svg.setAttribute("preserveAspectRatio", "none");
    const classes = Object.keys(r.counts || {});
    const counts = new Map(classes.map((c) => [c, 0]));
    const line = Math.max(1, Math.round(Math.max(w, h) / 250));
    const font = Math.max(10, Math.round(Math.max(w, h) / 45));
    const shown = r.boxes.filter((b) => Number(b.score) >= threshold);
    svg.replaceChildren(...shown.map((b) => {
      counts.set(b.label, (counts.get(b.label) || 0) + 1);
      const [x1, y1, x2, y2] = (b.box || []).map(Number);
      const caption = b.label + " " + Number(b.score).toFixed(2);
      const g = svgEl("g", { class: "box box-c" + (Math.max(0, classes.indexOf(b.label)) % 8) });
      g.appendChild(svgEl("rect", { x: x1, y: y1, width: Math.max(0, x2 - x1),
        height: Math.max(0, y2 - y1), "stroke-width": line }));
      const text = svgEl("text", { x: x1 + line, y: y1 > font ? y1 - line : y1 + font, "font-size": font });
      text.textContent = caption;
      const title = svgEl("title", {});
      title.textContent = caption;
      g.append(text, title);
      return g;
    }));
    svg.dataset.visible = String(shown.length);
    $("counts-note").textContent = t("result.counts_at", { value: threshold.toFixed(2), model: num(r.threshold) });
    $("result-counts").replaceChildren(...[...counts].map(([name, n]) => {
      const li = el("li", "count-row");
      li.dataset.label = name;
      li.appendChild(el("span", "count-name box-c" + (Math.max(0, classes.indexOf(name)) % 8), name));
      li.appendChild(el("span", "count-value", n));
      return li;
    }));
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function applyOpacity() {
    const value = Number($("opacity").value);
    $("result-heatmap").style.opacity = String(value / 100);
    $("opacity-value").textContent = value + "%";
  }

  function onImageLoad(event) {
    const img = event.target;
    img.classList.toggle("pixelated", img.naturalWidth > 0 && img.naturalWidth < 256);
  }

  // ---------------------------------------------------------------- reviews
  function renderReviews(r) {
    const reviews = r.reviews || [];
    $("reviews-empty").hidden = reviews.length > 0;
    $("reviews-list").replaceChildren(...reviews.map((rev) => {
      const li = el("li", "review " + (rev.verdict === "agree" ? "agree" : "disagree"));
      const head = el("p", "review-head");
      head.appendChild(el("strong", null, rev.reviewer || rev.user || rev.reviewer_name || "?"));
      head.appendChild(document.createTextNode(" "));
      head.appendChild(el("span", "verdict", t(rev.verdict === "agree" ? "review.agrees" : "review.disagrees")));
      if (rev.created) head.appendChild(el("span", "muted", " · " + when(rev.created)));
      li.appendChild(head);
      if (rev.note) li.appendChild(el("p", "review-note", rev.note));
      return li;
    }));
    const canReview = REVIEW_ROLES.includes(state.role);
    $("review-form").hidden = !canReview;
    $("reviews-box").hidden = !canReview && reviews.length === 0;
  }

  async function submitReview(event) {
    event.preventDefault();
    const form = event.target;
    const error = $("review-error");
    const verdict = form.querySelector("input[name=verdict]:checked");
    if (!verdict) {
      say(error, "review.choose");
      return;
    }
    say(error, null);
    const id = state.current && state.current.id;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await api("POST", "/v1/predictions/" + encodeURIComponent(id) + "/reviews",
        { verdict: verdict.value, note: $("review-note").value.trim() });
      form.reset();
      status("review.saved");
      state.history.loaded = false;
      const fresh = await api("GET", "/v1/predictions/" + encodeURIComponent(id));
      if (state.current && state.current.id === id) {
        state.current = fresh;
        renderResult(fresh);
      }
    } catch (err) {
      sayError(error, "review.failed", err);
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- history
  function readFilters() {
    const filters = {};
    const form = $("history-filters");
    ["pseudonym", "date_from", "date_to", "model", "label", "source"].forEach((name) => {
      const value = form.elements[name].value.trim();
      if (value) filters[name] = value;
    });
    return filters;
  }

  async function loadHistory() {
    const h = state.history;
    const params = new URLSearchParams(Object.assign({ limit: String(PAGE_SIZE), offset: String(h.offset) }, h.filters));
    const error = $("history-error");
    $("history-view").setAttribute("aria-busy", "true");
    try {
      const data = await api("GET", "/v1/predictions?" + params.toString());
      say(error, null);
      h.items = data.items || [];
      h.total = Number(data.total) || 0;
      h.loaded = true;
      renderHistory();
    } catch (err) {
      if (err.status !== 401) sayError(error, "history.failed", err);
    } finally {
      $("history-view").setAttribute("aria-busy", "false");
    }
  }

  function renderHistory() {
    const h = state.history;
    const list = $("history-list");
    list.replaceChildren(...h.items.map((item) => {
      const li = el("li");
      const button = el("button", "history-row");
      button.type = "button";
      button.dataset.id = String(item.id);
      button.setAttribute("aria-label", t("history.open", { created: when(item.created), label: labelText(item.label) }));
      const top = el("span", "row-top");
      const name = el("strong", "row-label", labelText(item.label));
      const source = pacsSource(item);
      if (source) name.appendChild(pacsBadge());
      top.appendChild(name);
      top.appendChild(el("span", "row-conf", pct(item.confidence)));
      button.appendChild(top);
      const input = item.input || {};
      const bits = [when(item.created), (item.model || {}).name,
        input.patient_pseudonym ?? item.patient_pseudonym, input.study_date ?? item.study_date];
      if ((item.reviews || []).length) bits.push(t("history.reviewed", { count: item.reviews.length }));
      button.appendChild(el("span", "row-meta", bits.filter((b) => b !== null && b !== undefined && b !== "").join(" · ")));
      button.addEventListener("click", () => openPrediction(item));
      li.appendChild(button);
      const href = source ? studyLink(source.study_url) : null;
      if (href) {  // beside the row's button: a link inside a button would not be one
        const link = el("a", "row-study", t("result.open_study"));
        link.href = href;
        link.target = "_blank";
        link.rel = "noopener noreferrer";
        li.appendChild(link);
      }
      return li;
    }));
    const summary = $("history-summary");
    if (h.total === 0) say(summary, "history.empty");
    else say(summary, "history.summary", { total: h.total });
    const pages = Math.max(1, Math.ceil(h.total / PAGE_SIZE));
    $("history-page").textContent = t("history.page", { page: Math.floor(h.offset / PAGE_SIZE) + 1, pages: pages });
    $("history-prev").disabled = h.offset <= 0;
    $("history-next").disabled = h.offset + PAGE_SIZE >= h.total;
  }

  async function openPrediction(item) {
    try {
      showResult(await api("GET", "/v1/predictions/" + encodeURIComponent(item.id)));
    } catch (err) {
      if (err.status === 401) return;
      showResult(item); // the listed copy is still a full record
      sayError($("history-error"), "result.load_failed", err);
    }
  }

  // ---------------------------------------------------------------- views
  function showView(name) {
    state.view = name;
    $("upload-view").hidden = name !== "upload";
    $("result-view").hidden = name !== "result";
    $("history-view").hidden = name !== "history";
    const onHistory = name === "history";
    $("tab-upload").setAttribute("aria-current", onHistory ? "false" : "page");
    $("tab-history").setAttribute("aria-current", onHistory ? "page" : "false");
    if (onHistory && !state.history.loaded) loadHistory();
    const heading = $(name + "-title");
    if (heading && document.activeElement && document.activeElement !== document.body) {
      heading.focus({ preventScroll: false });
    }
  }

  // ---------------------------------------------------------------- start
  function wire() {
    $("lang-select").addEventListener("change", (e) => {
      langPicks += 1;
      setLang(e.target.value, true);
    });
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", signOut);
    $("tab-upload").addEventListener("click", () => showView(state.current && state.view === "history" ? "result" : "upload"));
    $("tab-history").addEventListener("click", () => showView("history"));
    $("new-upload").addEventListener("click", () => showView("upload"));
    $("model-select").addEventListener("change", renderModelInfo);
    $("camera-input").addEventListener("change", onPicked);
    $("file-input").addEventListener("change", onPicked);
    $("opacity").addEventListener("input", applyOpacity);
    $("score-threshold").addEventListener("input", renderBoxes);
    $("result-image").addEventListener("load", onImageLoad);
    $("result-heatmap").addEventListener("load", onImageLoad);
    $("result-heatmap").addEventListener("error", (e) => { e.target.hidden = true; });
    $("review-form").addEventListener("submit", submitReview);
    $("history-filters").addEventListener("submit", (e) => {
      e.preventDefault();
      state.history.filters = readFilters();
      state.history.offset = 0;
      loadHistory();
    });
    $("history-filters").addEventListener("reset", () => {
      window.setTimeout(() => {
        state.history.filters = {};
        state.history.offset = 0;
        if (state.user) loadHistory();
      }, 0);
    });
    $("history-prev").addEventListener("click", () => {
      state.history.offset = Math.max(0, state.history.offset - PAGE_SIZE);
      loadHistory();
    });
    $("history-next").addEventListener("click", () => {
      state.history.offset += PAGE_SIZE;
      loadHistory();
    });
    document.querySelectorAll("h1[id$='-title']").forEach((h) => h.setAttribute("tabindex", "-1"));
    setupDrop();
  }

  async function start() {
    // a language picked before this script ran: the menu no longer shows the page's language
    const shown = matchLang($("lang-select").value);
    const pickedEarly = Boolean(shown) && shown !== matchLang(document.documentElement.lang);
    wire();
    const lang = pickedEarly ? shown : initialLang();
    try {
      await loadCatalogue("en");
    } catch (e) { /* the page's own English text stays */ }
    // a pick made while the catalogue loaded has set the language: the reader's choice wins
    if (langPicks === 0) await setLang(lang, pickedEarly);
    status("status.loading");
    try {
      const data = await api("GET", "/v1/session", undefined, { allow401: true });
      startSession(data);
      status(null);
    } catch (err) {
      if (document.body.dataset.mode === "local") {
        status(err.status === 401 ? "status.local_link" : null);  // no accounts: the link lets in
        if (err.status !== 401) sayError($("status"), "error.generic", err);
        document.body.classList.add("ready");
        return;
      }
      if (err.status === 401) status(null);
      else sayError($("status"), "error.generic", err);
      showSignin();
    }
    document.body.classList.add("ready");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
