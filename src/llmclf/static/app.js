// The page at `/`: try a text, score a CSV, read the model card. Plain DOM calls against the server's API;
// text from the server goes in through textContent, and the card's HTML is escaped by the server.
"use strict";

const $ = (selector) => document.querySelector(selector);
let model = null;

async function call(path, options) {
  const response = await fetch(path, options);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response;
}

function show(element, visible) { element.hidden = !visible; }

function showError(element, error) {
  element.textContent = error ? error.message : "";
  show(element, Boolean(error));
}

function percent(p) { return `${(100 * p).toFixed(1)}%`; }

async function loadModel() {
  try {
    model = await (await call("/v1/model")).json();
    $("#model-name").textContent = model.name;
    document.title = `${model.name} · llmclf`;
    const parts = [`labels: ${model.labels.join(", ")}`];
    if (model.backbone) parts.push(`backbone: ${model.backbone}`);
    parts.push(`max_length: ${model.max_length}`);
    $("#model-summary").textContent = parts.join(" · ");
    if (!model.card) {
      $("#open-card").disabled = true;
      $("#open-card").textContent = "This model has no model card";
    }
  } catch (error) {
    $("#model-summary").textContent = `Cannot read the model's details: ${error.message}`;
  }
}

function renderBars(prediction, labels) {
  const bars = $("#bars");
  bars.replaceChildren();
  for (const label of labels) {
    const p = prediction.probs[label];
    const row = document.createElement("div");
    // multi-label models choose any number of labels: each chosen one is marked
    const chosen = prediction.labels ? prediction.labels.includes(label) : label === prediction.label;
    row.className = "bar" + (chosen ? " top" : "");
    row.dataset.label = label;
    row.dataset.prob = String(p);
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = label;
    const track = document.createElement("div");
    track.className = "track";
    track.setAttribute("role", "meter");
    track.setAttribute("aria-label", `probability of ${label}`);
    track.setAttribute("aria-valuemin", "0");
    track.setAttribute("aria-valuemax", "1");
    track.setAttribute("aria-valuenow", String(p));
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = percent(p);
    track.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = percent(p);
    row.append(name, track, pct);
    bars.append(row);
  }
}

function decisionRule(body) {
  if (body.decision === "thresholds") return "Decision: every label whose probability reaches its threshold ("
    + Object.entries(body.thresholds).map(([label, t]) => `${label} ${t}`).join(", ") + ").";
  return body.decision === "threshold"
    ? `Decision: ${body.labels[1]} when its probability is at least ${body.threshold}.`
    : "Decision: the most probable label.";
}

function showValue(body, prediction) {
  // a regression model: the value in the target's units, and its interval when the model has one
  $("#result-label").textContent = `${body.target}: ${prediction.value.toFixed(3)}`;
  $("#result-score").textContent = prediction.value_low == null ? ""
    : `(${percent(body.interval_level)} interval ${prediction.value_low.toFixed(3)} to ${prediction.value_high.toFixed(3)})`;
  show($("#result-review"), false);
  $("#bars").replaceChildren();
  $("#result-rule").textContent = "";
}

async function onPredict(event) {
  event.preventDefault();
  const button = $("#classify");
  button.disabled = true;
  showError($("#predict-error"), null);
  try {
    const response = await call("/v1/predict", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({texts: [$("#text").value]}),
    });
    const body = await response.json();
    const prediction = body.predictions[0];
    if (body.problem_type === "regression") {
      showValue(body, prediction);
    } else {
      $("#result-label").textContent = body.problem_type ? (prediction.labels.join(", ") || "(no label)")
                                                         : prediction.label;
      $("#result-score").textContent = `(${percent(prediction.score)})`;
      show($("#result-review"), prediction.needs_review);
      renderBars(prediction, body.labels);
      $("#result-rule").textContent = decisionRule(body);
    }
    show($("#result"), true);
  } catch (error) {
    show($("#result"), false);
    showError($("#predict-error"), error);
  } finally {
    button.disabled = false;
  }
}

async function onScore(event) {
  event.preventDefault();
  const file = $("#csv-file").files[0];
  const button = $("#score");
  showError($("#csv-error"), null);
  show($("#csv-done"), false);
  if (!file) return;
  button.disabled = true;
  try {
    const column = encodeURIComponent($("#text-column").value);
    const response = await call(`/v1/score-csv?text_column=${column}`, {
      method: "POST", headers: {"Content-Type": "text/csv"}, body: file,
    });
    const blob = await response.blob();
    const link = $("#csv-download");
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = file.name.replace(/\.csv$/i, "") + "-scored.csv";
    $("#csv-rows").textContent = response.headers.get("X-Rows") || "?";
    show($("#csv-done"), true);
    link.click();
  } catch (error) {
    showError($("#csv-error"), error);
  } finally {
    button.disabled = false;
  }
}

function renderMetrics(metrics) {
  const box = $("#metrics");
  box.replaceChildren();
  if (!metrics) return;
  const keys = ["accuracy", "f1_macro", "precision_macro", "recall_macro", "roc_auc", "loss"];
  const splits = Object.keys(metrics).filter((s) => metrics[s] && typeof metrics[s] === "object" && "accuracy" in metrics[s]);
  if (!splits.length) return;
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const text of ["split", ...keys]) {
    const th = document.createElement("th");
    th.textContent = text;
    head.append(th);
  }
  const body = table.createTBody();
  for (const split of splits) {
    const row = body.insertRow();
    row.insertCell().textContent = split;
    for (const key of keys) {
      const value = metrics[split][key];
      row.insertCell().textContent = typeof value === "number" ? value.toFixed(4) : "—";
    }
  }
  const title = document.createElement("h3");
  title.textContent = "Metrics";
  box.append(title, table);
  show(box, true);
}

async function onOpenCard() {
  const button = $("#open-card");
  const article = $("#card-body");
  if (!article.hidden) {
    show(article, false);
    show($("#metrics"), false);
    button.textContent = "Open the model card";
    return;
  }
  showError($("#card-error"), null);
  try {
    const html = await (await call("/v1/model/card")).text();
    article.innerHTML = html;  // escaped and built from a fixed set of tags by the server
    renderMetrics(model && model.metrics);
    show(article, true);
    button.textContent = "Close the model card";
  } catch (error) {
    showError($("#card-error"), error);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("#predict-form").addEventListener("submit", onPredict);
  $("#csv-form").addEventListener("submit", onScore);
  $("#open-card").addEventListener("click", onOpenCard);
  loadModel();
});
