// The model explorer's page script (page.py inlines it; its hash is in the page's CSP).
//
// Python computed everything; this script draws the JSON in #explorer-data and links the
// views. Every string from the model or the input is written with text nodes (el() below)
// and never parsed as HTML. State: the current input's view, the selected head, the
// selected SOp (and residual dimension), the residual step shown.
//
// Conventions shared by every view: positions are numbered with BOS at 0 and the tokens
// from 1 (`1:a`); colours follow rasp_compiler/colours.py (blue positive, red negative,
// white 0; attention weights white to blue), as the matplotlib pictures do; nothing is
// wider than the window: the layer plan stacks the layers, wide heatmaps are cut into
// bands or shrink their cells to the panel.
"use strict";

(function () {
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const MODEL = DATA.model;
  const COLOURS = MODEL.colours;
  const state = { view: null, head: null, sop: null, dim: null, step: 0, edge: null };
  const HEADS = [];
  for (const layer of MODEL.layers) for (const head of layer.heads) HEADS.push(head);
  const HEAD_BY_NAME = new Map(HEADS.map((h) => [h.name, h]));

  // --------------------------------------------------------------------- helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "data") for (const [k, v] of Object.entries(value)) node.dataset[k] = v;
      else if (key === "on") for (const [k, v] of Object.entries(value)) node.addEventListener(k, v);
      else if (key === "title" || key === "id" || key === "type" || key === "value") node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function fmt(x, digits) {
    if (typeof x === "string") return x; // "inf", "-inf", "nan"
    if (x === null || x === undefined) return "-";
    return Number(x).toPrecision(digits || 6).replace(/(\.\d*?)0+(e|$)/, "$1$2").replace(/\.(e|$)/, "$1");
  }

  function rgb(hex) {
    return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }

  function mix(from, to, t) {
    const a = rgb(from), b = rgb(to);
    return `rgb(${a.map((x, i) => Math.round(x + (b[i] - x) * t)).join(", ")})`;
  }

  // A signed value on the shared scale: -scale red, 0 white, +scale blue.
  function signed(value, scale) {
    const v = Math.max(-1, Math.min(1, Number(value) / (scale || 1)));
    if (!Number.isFinite(v)) return COLOURS.zero;
    return v >= 0 ? mix(COLOURS.zero, COLOURS.positive, v) : mix(COLOURS.zero, COLOURS.negative, -v);
  }

  // An attention weight, 0 white to 1 blue: the positive half of the same scale.
  function weight(value) {
    return signed(value, 1);
  }

  function darkText(value, scale) {
    return Math.abs(Number(value) / (scale || 1)) > 0.6;
  }

  // The legend of a heatmap: its colour bar with the numbers at its ends, and the convention.
  function legend(kind, scale) {
    const bar = el("span", { class: "bar" });
    if (kind === "weight") {
      bar.style.background = `linear-gradient(to right, ${COLOURS.zero}, ${COLOURS.positive})`;
      return el("div", { class: "legend colour-legend", data: { kind } },
        "0 ", bar, " 1: attention weight, white (none) to blue (all of it)");
    }
    bar.style.background = `linear-gradient(to right, ${COLOURS.negative}, ${COLOURS.zero}, ${COLOURS.positive})`;
    return el("div", { class: "legend colour-legend", data: { kind } },
      `-${fmt(scale, 3)} `, bar, ` +${fmt(scale, 3)}: red negative, white 0, blue positive ` +
      "(the matplotlib pictures use the same colours)");
  }

  function positionLabel(q, positions) {
    return `${q}:${positions[q]}`;  // 0:BOS, 1:first token, ...
  }

  function chip(sop) {
    const group = MODEL.groups.find((g) => g.sop === sop);
    const range = group ? ` [${group.start}:${group.stop}]` : "";
    return el("span", { class: "chip", data: { sop }, title: `select ${sop}`,
                        on: { click: (e) => { e.stopPropagation(); selectSop(sop); } } },
              sop + range);
  }

  function kv(pairs) {
    const grid = el("div", { class: "kv" });
    for (const [k, v] of pairs) grid.append(el("div", { class: "k" }, k), el("div", {}, v));
    return grid;
  }

  function section(id, title, ...children) {
    return el("section", { id }, el("h2", {}, title), ...children);
  }

  function widthOf(id) {
    return document.getElementById(id).clientWidth || 800;
  }

  // Column widths for a fixed-layout table: the label column, then `count` cells.
  function columns(label, count, cell) {
    const group = el("colgroup", {});
    const first = el("col", {});
    first.style.width = `${label}px`;
    group.append(first);
    for (let i = 0; i < count; i++) {
      const col = el("col", {});
      col.style.width = `${cell}px`;
      group.append(col);
    }
    return group;
  }

  // --------------------------------------------------------------------- the hover readout

  // One readout that follows the cursor over any heatmap cell: next to the pointer, kept
  // inside the window, hidden when the pointer leaves the cell.
  const hover = el("div", { class: "hover", id: "hover", role: "status", hidden: true });

  function hoverable(cell, describe) {
    cell.addEventListener("mouseenter", (e) => { hover.textContent = describe(); hover.hidden = false; place(e); });
    cell.addEventListener("mousemove", place);
    cell.addEventListener("mouseleave", () => { hover.hidden = true; });
  }

  function place(e) {
    const gap = 14, box = hover.getBoundingClientRect();
    let x = e.clientX + gap, y = e.clientY + gap;
    if (x + box.width > window.innerWidth - 4) x = Math.max(4, e.clientX - gap - box.width);
    if (y + box.height > window.innerHeight - 4) y = Math.max(4, e.clientY - gap - box.height);
    hover.style.left = `${x}px`;
    hover.style.top = `${y}px`;
  }

  // --------------------------------------------------------------------- skeleton

  const app = document.getElementById("app");
  const banner = el("div", { id: "banner", class: "banner", role: "alert", hidden: true });
  app.append(
    el("header", {}, el("h1", {}, `${MODEL.title}: model explorer`),
       el("p", {}, DATA.mode === "server"
         ? "Live: type an input below; the page runs it through the compiled model and the evaluator."
         : "Static page: the views for the inputs saved in it. `rasp-compiler explore` runs any input."),
       el("p", { class: "conventions" }, "Positions: 0 is BOS, the tokens count from 1. Colours: " +
         `${COLOURS.convention}. Hover a cell to read its value.`)),
    el("main", {},
       banner,
       MODEL.has_program ? null : el("p", { class: "note", id: "no-program" }, MODEL.no_program_note),
       section("input", "Input, output and every SOp's value", el("div", { id: "input-body" })),
       section("plan", "Layer plan", el("p", { class: "note" },
         "Top to bottom: the embeddings, then each layer's attention heads and MLP parts, with the " +
         "residual SOps (and dimension ranges) each reads and writes. Click a head to see it; click an " +
         "SOp to highlight where it is written and read; hover a box's name for what its kind of head or MLP means."), el("div", { id: "plan-body" })),
       section("circuit", "Circuit", el("div", { id: "circuit-body" })),
       section("head", "Attention head", el("div", { id: "head-body" })),
       section("residual", "Residual stream", el("div", { id: "residual-body" })),
       MODEL.compression ? section("interference", "Interference (compressed model)",
         el("p", { class: "note" },
           `This model runs the compiled transformer through a ${MODEL.compression.d}-dimensional ` +
           `residual (W: ${MODEL.compression.d_model} x ${MODEL.compression.d}). Entry (i, j) of W W^T is ` +
           "how much reading feature i (row) picks up of feature j (column): the identity without " +
           "compression, superposition off the diagonal. Click a feature to select it everywhere."),
         el("div", { id: "interference-body" })) : null,
       section("selectors", "Selector report", el("div", { id: "selectors-body" })),
       section("facts", "Compile facts", el("div", { id: "facts-body" }))),
    hover);

  // --------------------------------------------------------------------- compile facts

  function renderFacts() {
    const body = document.getElementById("facts-body");
    body.replaceChildren(kv(MODEL.facts));
    if (MODEL.depth > MODEL.lower_bound)
      body.append(el("p", { class: "flag" },
        `${MODEL.depth - MODEL.lower_bound} layer(s) above the lower bound: see the flags in the selector report.`));
    if (MODEL.has_program) {
      const rows = MODEL.nodes.map((n) => el("tr", { data: { sop: n.label } },
        el("td", {}, n.label), el("td", {}, n.kind), el("td", {}, n.place), el("td", {}, n.where)));
      body.append(el("h3", {}, "Where every node of the program lives"),
        el("table", { class: "grid", id: "nodes" },
           el("tr", {}, el("th", {}, "node"), el("th", {}, "kind"), el("th", {}, "place"), el("th", {}, "where")),
           rows));
    }
  }

  // --------------------------------------------------------------------- layer plan

  function headBox(head) {
    const entry = head.selector_entry;
    const flags = entry && entry.flags.length ? el("div", { class: "flag" }, `${entry.flags.length} flag(s)`) : null;
    return el("div", { class: "box head", data: { head: head.name }, title: `show head ${head.name}`,
                       on: { click: () => selectHead(head.name) } },
      el("div", { class: "name", title: MODEL.glossary[head.kind] || null }, `${head.name} · ${head.kind}`),
      el("div", {}, "computes ", chip(head.writes[0] || head.label)),
      el("div", {}, `selector ${head.selector}:`),
      el("div", { class: "expr" }, head.expression),
      el("div", {}, "reads ", head.reads.length ? head.reads.map(chip) : "bos only"),
      flags);
  }

  function mlpBox(part) {
    return el("div", { class: "box mlp", data: { mlp: part.id } },
      el("div", { class: "name", title: MODEL.glossary[part.construction] || null },
         `MLP [${part.start}:${part.stop}] · ${part.construction}`),
      part.units.length ? el("div", { class: "expr" }, `computes ${part.units.join(", ")}`) : null,
      el("div", {}, "reads ", part.reads.length ? part.reads.map(chip) : "-"),
      el("div", {}, "writes ", part.writes.length ? part.writes.map(chip) : "-"));
  }

  // The plan stacks the layers top to bottom (one row each: its attention, then its MLP),
  // and the boxes of a sublayer wrap within their half: it is never wider than the panel.
  function renderPlan() {
    const plan = el("div", { class: "plan" });
    const embedded = MODEL.sops.filter((s) => s.time === 0).map((s) => s.label);
    const special = MODEL.groups.filter((g) => g.sop === "one" || g.sop === "bos").map((g) => g.sop);
    plan.append(el("div", { class: "layer-label" }, "embeddings"),
      el("div", { class: "cell embed-cell" },
         el("div", { class: "box embed" }, el("div", {}, "writes "), [...special, ...embedded].map(chip))));
    for (const layer of MODEL.layers) {
      const heads = layer.heads.length;
      plan.append(
        el("div", { class: "layer-label", data: { layer: layer.index } }, `layer ${layer.index}`),
        el("div", { class: "cell", data: { layer: layer.index } },
           el("div", { class: "caption" }, `attention (${heads} head${heads === 1 ? "" : "s"})`),
           el("div", { class: "boxes" },
              heads ? layer.heads.map(headBox) : el("div", { class: "empty" }, "no heads"))),
        el("div", { class: "cell" },
           el("div", { class: "caption" }, `MLP (${layer.mlp_hidden} neuron${layer.mlp_hidden === 1 ? "" : "s"})`),
           el("div", { class: "boxes" },
              layer.mlp.length ? layer.mlp.map(mlpBox) : el("div", { class: "empty" }, "empty"))));
    }
    document.getElementById("plan-body").replaceChildren(plan);
  }

  // --------------------------------------------------------------------- input

  function sameWords(a, b) {
    return a.length === b.length && a.every((w, i) => w === b[i]);
  }

  function renderInputForm() {
    const body = document.getElementById("input-body");
    const box = el("input", { id: "tokens", type: "text", "aria-label": "input tokens",
                              value: DATA.inputs[0].words.join(" ") });
    const run = el("button", { id: "run", type: "button" }, "Run");
    const error = el("div", { id: "input-error", class: "error", role: "alert", hidden: true });
    const stale = el("p", { id: "stale-note", class: "stale-note", hidden: true });
    const form = el("div", { class: "form" }, el("label", { for: "tokens" }, "Tokens (separated by spaces): "), box, " ", run);
    const submit = () => runInput(box.value);
    run.addEventListener("click", submit);
    box.addEventListener("keydown", (e) => { if (e.key === "Enter") submit(); });
    body.replaceChildren(form);
    if (DATA.mode === "static" && DATA.inputs.length > 1) {
      const list = el("div", { class: "note" }, "Inputs saved in this page: ");
      DATA.inputs.forEach((view, i) => list.append(
        el("button", { type: "button", class: "saved", data: { index: i },
                       on: { click: () => { box.value = view.words.join(" "); showView(view); } } },
           view.words.join(" ") || "(empty)"), " "));
      body.append(list);
    }
    body.append(el("p", { class: "note" }, `vocab: ${MODEL.vocab.join(" ")}; at most ${MODEL.max_seq_len} tokens`),
                error, stale, el("div", { id: "run-result" }));
  }

  // A bad input: its message, and the previous input's results dimmed below it, so they
  // cannot be taken for this input's.
  const RESULTS = ["run-result", "head-body", "residual-body", "banner"];

  function showError(message) {
    const box = document.getElementById("input-error");
    box.textContent = message;
    box.hidden = !message;
    const stale = !!message && !!state.view;
    for (const id of RESULTS) document.getElementById(id).classList.toggle("stale", stale);
    const note = document.getElementById("stale-note");
    note.hidden = !stale;
    note.textContent = stale ? `Dimmed below: the results of the previous input, ${state.view.words.join(" ")}, ` +
                               "not of the one typed." : "";
  }

  function runInput(text) {
    const words = text.split(/\s+/).filter((w) => w.length);
    if (DATA.mode === "static") {
      const view = DATA.inputs.find((v) => sameWords(v.words, words));
      if (view) return showView(view);
      return showError(`This static page holds only the inputs saved in it (${DATA.inputs.map((v) => v.words.join(" ")).join("; ")}); ` +
                       "`rasp-compiler explore` runs any input.");
    }
    document.body.dataset.busy = "1";
    fetch("/api/run", { method: "POST", headers: { "Content-Type": "application/json" },
                        body: JSON.stringify({ text }) })
      .then((response) => {
        if (!response.ok) return response.text().then((t) => { throw new Error(t); });
        return response.json();
      })
      .then((view) => { if (view.error !== undefined) showError(view.error); else showView(view); })
      .catch((error) => showError(`the explorer server did not answer: ${error.message}`))
      .finally(() => { delete document.body.dataset.busy; });
  }

  // A row of values as tokens, each one marked where it differs from `against`.
  function tokens(id, values, against, mark, why) {
    const code = el("code", { id, class: "tokens" });
    values.forEach((v, i) => {
      if (i) code.append(" ");
      const differs = against && v !== against[i];
      code.append(el("span", { class: differs ? `tok ${mark}` : "tok", data: { position: i + 1 },
                               title: differs ? `position ${i + 1}: ${why} ${against[i]}` : null }, v));
    });
    return code;
  }

  function renderRun(view) {
    const result = document.getElementById("run-result");
    const parts = [el("p", {}, "input: ", el("code", { id: "input-shown" }, view.words.join(" ")))];
    if (view.exact_output) {
      const differ = view.output.filter((v, i) => v !== view.exact_output[i]).length;
      parts.push(
        el("p", {}, "output (compressed): ", tokens("output", view.output, view.exact_output, "differs", "the exact model gives"),
           el("span", { id: "exact-diff", class: differ ? "differs-count" : "ok" },
              differ ? `  ${differ} of ${view.output.length} positions differ from the exact model (marked)`
                     : "  agrees with the exact model")),
        el("p", {}, "exact (uncompressed) model: ", el("code", { id: "exact-output" }, view.exact_output.join(" "))));
    } else {
      parts.push(el("p", {}, "output: ", tokens("output", view.output, view.expected, "bad", "the evaluator gives")));
    }
    if (view.expected) parts.push(el("p", {}, "evaluator: ", el("code", { id: "expected" }, view.expected.join(" ")),
      view.problems.length ? null : el("span", { class: "ok" }, "  agrees")));
    if (view.evaluator_error) parts.push(el("p", { class: "error" }, `the evaluator has no answer here: ${view.evaluator_error}`));
    const head = el("tr", {}, el("th", {}, "SOp"), el("th", {}, "read after"),
      view.words.map((w, i) => el("th", {}, positionLabel(i + 1, ["BOS", ...view.words]))));
    const rows = view.sops.map((s) => {
      const meta = MODEL.sops.find((m) => m.label === s.label);
      return el("tr", { data: { sop: s.label }, on: { click: () => selectSop(s.label) } },
        el("th", {}, s.label), el("td", {}, meta ? meta.written_after : ""),
        s.values.map((v, i) => {
          const bad = s.agree && !s.agree[i];
          const title = s.expected ? `evaluator: ${s.expected[i]}` : "no evaluator (loaded model)";
          return el("td", { class: bad ? "bad" : null, title, data: { position: i + 1 } }, v);
        }));
    });
    parts.push(el("h3", {}, "Read-back: every SOp decoded right after the sublayer that writes it"),
      el("div", { class: "fit" }, el("table", { class: "grid", id: "sop-values" }, head, rows)));
    if (MODEL.not_in_residual.length)
      parts.push(el("p", { class: "note" }, "Not in the residual: ",
        MODEL.not_in_residual.map(([label, where]) => `${label} (${where})`).join("; ")));
    result.replaceChildren(...parts);
  }

  function renderBanner(view) {
    if (!view.problems.length) { banner.hidden = true; banner.replaceChildren(); return; }
    banner.classList.toggle("expected", !!MODEL.compression);
    if (MODEL.compression) {
      banner.replaceChildren(
        `The compressed model differs from the exact model on this input (${view.problems.length} ` +
        `finding(s)). Expected in superposition: it agreed with the exact model on ` +
        `${fmt(100 * MODEL.compression.agreement, 4)}% of positions in training.`,
        el("ul", {}, view.problems.map((p) => el("li", {}, p))));
      banner.hidden = false;
      return;
    }
    banner.replaceChildren(
      `THE COMPILED MODEL AND THE EVALUATOR DISAGREE on this input (${view.problems.length} ` +
      "finding(s)). They never should: this is a compiler bug; please report it with this input.",
      el("ul", {}, view.problems.map((p) => el("li", {}, p))));
    banner.hidden = false;
  }

  // --------------------------------------------------------------------- heads

  // A square heatmap of positions x positions, its cells as large as the panel allows
  // (at most 28 px; the weights are written in them while they fit).
  function heatmap(matrix, caption, positions, opts) {
    const n = positions.length;
    const cell = Math.max(8, Math.min(28, Math.floor((opts.width - 72) / n)));
    const table = el("table", { class: "heat" + (opts.extraClass ? " " + opts.extraClass : ""), data: opts.data || {} },
      el("caption", {}, caption));
    table.append(el("tr", {}, el("th", { class: "axis" }, "query \\ key"),
      positions.map((p, k) => el("th", { class: "col" }, positionLabel(k, positions)))));
    matrix.forEach((row, q) => {
      table.append(el("tr", {}, el("th", {}, positionLabel(q, positions)), row.map((value, k) => {
        const masked = opts.causal && k > q;
        const td = el("td", { class: masked ? "masked" : null, data: { q, k, value } });
        td.style.backgroundColor = weight(value);
        td.style.width = td.style.minWidth = td.style.height = `${cell}px`;
        if (darkText(value, 1)) td.style.color = "#fff";
        if (Number(value) > 0.005 && cell >= 22) td.textContent = fmt(value, 2);
        hoverable(td, () => opts.describe(q, k));
        return td;
      })));
    });
    return table;
  }

  function renderHeadButtons() {
    return el("div", { id: "head-buttons" }, HEADS.length ? HEADS.map((h) =>
      el("button", { type: "button", class: "headbtn", data: { head: h.name },
                     on: { click: () => selectHead(h.name) } }, `${h.name} ${h.label}`))
      : el("span", { class: "empty" }, "this model has no attention heads"));
  }

  function renderHead() {
    const body = document.getElementById("head-body");
    body.replaceChildren(renderHeadButtons());
    const head = HEAD_BY_NAME.get(state.head);
    if (!head || !state.view) return markSelection();
    const data = state.view.heads[head.name];
    const positions = state.view.positions;
    const entry = head.selector_entry;
    const describe = (q, k) => {
      let text = `${head.name} query ${positionLabel(q, positions)} -> key ${positionLabel(k, positions)}: weight ${fmt(data.compiled[q][k])}, logit ${fmt(data.scores[q][k], 5)}`;
      if (data.ideal) text += `, ideal ${fmt(data.ideal[q][k])}`;
      if (MODEL.causal && k > q) text += " (masked: a causal query sees no later key)";
      return text;
    };
    const width = widthOf("head-body");
    const maps = el("div", { class: "maps" },
      heatmap(data.compiled, `compiled pattern (${head.hook})`, positions,
              { describe, causal: MODEL.causal, data: { which: "compiled" }, width }),
      data.ideal ? heatmap(data.ideal, "ideal pattern (from the evaluator)", positions,
                           { describe, causal: MODEL.causal, data: { which: "ideal" }, width })
                 : el("p", { class: "note" }, "ideal pattern: needs the program (see the note above)"));
    if (MODEL.causal) {
      const mask = positions.map((_, q) => positions.map((__, k) => (k <= q ? 1 : 0)));
      maps.append(heatmap(mask, "causal mask (1: key visible)", positions,
        { describe: (q, k) => `query ${q} ${k <= q ? "sees" : "does not see"} key ${k}`, data: { which: "mask" }, width }));
    }
    const facts = [
      ["head", `${head.name} (${head.kind}) computes ${head.label}`],
      ["selector", head.selector],
      ["written", entry ? entry.written : head.expression],
      ["normal form", entry ? entry.normal_form : "-"],
      ["construction", entry ? `${entry.construction}: ${entry.cost}` : "-"],
      ["query / key / value read", `${head.queries.join(", ") || "-"} / ${head.keys.join(", ") || "-"} / ${head.values.join(", ") || "bos"}`],
      ["coldness", `${fmt(head.coldness, 4)} (${MODEL.glossary.coldness})`],
      ["logit margin (this input)", data.margin === null ? "needs the program" : fmt(data.margin, 5)],
      ["BOS leak (this input)", data.bos_leak === null ? "needs the program" : fmt(data.bos_leak, 3)],
      ["max deviation from ideal", data.max_deviation === null ? "needs the program" : fmt(data.max_deviation, 3)],
    ];
    if (entry) for (const [name, cost] of entry.alternatives) facts.push(["alternative", `${name}: ${cost}`]);
    body.append(el("h3", { id: "head-title" }, `${head.name}: ${head.label} <- ${head.expression}`), kv(facts));
    if (entry && entry.flags.length) body.append(el("ul", { class: "flag" }, entry.flags.map((f) => el("li", {}, f))));
    body.append(legend("weight"), maps);
    markSelection();
  }

  // --------------------------------------------------------------------- residual stream

  // The residual dimensions cut into bands that fit the panel: whole SOp groups where they
  // fit (a group wider than a band continues in the next one).
  function bands(perBand) {
    const out = [];
    let current = [], used = 0;
    const flush = () => { if (current.length) out.push(current); current = []; used = 0; };
    for (const g of MODEL.groups) {
      const size = g.stop - g.start;
      if (used && used + size > perBand && size <= perBand) flush();
      for (let start = g.start; start < g.stop;) {
        if (used === perBand) flush();
        const stop = Math.min(g.stop, start + perBand - used);
        current.push({ group: g, start, stop });
        used += stop - start;
        start = stop;
      }
    }
    flush();
    return out;
  }

  function renderResidual() {
    const body = document.getElementById("residual-body");
    if (!state.view) return body.replaceChildren();
    const steps = el("div", { class: "steps" }, el("span", {}, "after: "));
    MODEL.steps.forEach((name, i) => steps.append(el("button", {
      type: "button", class: i === state.step ? "sel" : null, data: { step: i },
      on: { click: () => { state.step = i; renderResidual(); } } }, name)));
    const slider = el("input", { type: "range", id: "step-slider", min: 0, max: MODEL.steps.length - 1,
                                 value: String(state.step), "aria-label": "residual step" });
    slider.addEventListener("input", () => { state.step = Number(slider.value); renderResidual(); });
    steps.append(slider);
    const matrix = state.view.residual[state.step];
    const positions = state.view.positions;
    let scale = 0;
    for (const row of matrix) for (const v of row) if (typeof v === "number") scale = Math.max(scale, Math.abs(v));
    const CELL = 20, LABEL = 64;
    const perBand = Math.max(4, Math.floor((widthOf("residual-body") - LABEL - 16) / CELL));
    const map = el("div", { id: "residual-map" },
      el("div", { class: "caption" }, `residual after ${MODEL.steps[state.step]}: positions x dimensions, grouped by SOp` +
         (MODEL.dims.length > perBand ? " (the dimensions continue band by band, top to bottom)" : "")));
    for (const band of bands(perBand)) {
      const count = band.reduce((n, piece) => n + piece.stop - piece.start, 0);
      const table = el("table", { class: "heat resid band" }, columns(LABEL, count, CELL));
      table.style.width = `${LABEL + count * CELL}px`;
      table.append(el("tr", {}, el("th", { class: "corner" }), band.map(({ group: g, start, stop }) => {
        const th = el("th", { class: "group", colspan: stop - start, data: { sop: g.sop },
                              title: `${g.sop}: written by ${g.written_by}; read by ${g.read_by.join(", ") || "-"}`,
                              on: { click: () => selectSop(g.sop) } }, start > g.start ? `${g.sop} (cont.)` : g.sop);
        return th;
      })));
      const dims = [];
      for (const piece of band) for (let i = piece.start; i < piece.stop; i++) dims.push(i);
      const first = new Set(band.map((piece) => piece.start));
      table.append(el("tr", {}, el("th", { class: "axis" }, "position"), dims.map((i) => {
        const d = MODEL.dims[i];
        return el("th", { class: "dim" + (first.has(i) ? " first" : ""), data: { sop: d.sop, dim: i }, title: `dimension ${i}: ${d.label}`,
                          on: { click: () => selectDim(i) } }, d.value === "" ? d.sop : d.value);
      })));
      matrix.forEach((row, q) => table.append(el("tr", {}, el("th", { class: "pos" }, positionLabel(q, positions)), dims.map((i) => {
        const d = MODEL.dims[i], value = row[i];
        const td = el("td", { class: first.has(i) ? "first" : null, data: { sop: d.sop, dim: i, q, value } });
        td.style.backgroundColor = signed(value, scale);
        hoverable(td, () => `position ${positionLabel(q, positions)}, dimension ${i} ${d.label}: ${fmt(value)}`);
        return td;
      }))));
      map.append(table);
    }
    const decoded = state.view.decoded[state.step];
    const rows = MODEL.sops.map((s) => el("tr", { data: { sop: s.label } },
      el("th", {}, s.label), el("td", {}, s.written_after),
      decoded[s.label].map((v) => el("td", { class: s.time > state.step ? "later" : null,
                                             title: s.time > state.step ? `not written yet (written after ${s.written_after})` : null }, v))));
    body.replaceChildren(steps,
      el("div", { class: "legend" }, el("span", { class: "reads" }, "read by the selected head"),
         el("span", { class: "writes" }, "written by it"), el("span", { class: "sop-sel" }, "the selected SOp"),
         "click an SOp or a dimension to select it"),
      legend("signed", scale || 1),
      map,
      el("h3", {}, `Decoded at this step (grey: not written yet)`),
      el("div", { class: "fit" }, el("table", { class: "grid", id: "decoded" },
         el("tr", {}, el("th", {}, "SOp"), el("th", {}, "written after"), positions.slice(1).map((p, i) => el("th", {}, positionLabel(i + 1, positions)))),
         rows)));
    markSelection();
  }

  // --------------------------------------------------------------------- interference

  // W W^T as large as the panel allows (cells of 4 to 44 px), rows and columns labelled
  // with their features (SOp:value) where the cells are tall enough, and by SOp always.
  function renderInterference() {
    const c = MODEL.compression;
    const matrix = c.interference;
    const n = matrix.length;
    let scale = 0;
    for (const row of matrix) for (const v of row) if (typeof v === "number") scale = Math.max(scale, Math.abs(v));
    const longest = Math.max(...MODEL.dims.map((d) => d.label.length));
    const label = Math.min(180, 24 + 6.5 * longest);
    const cell = Math.max(4, Math.min(44, Math.floor((widthOf("interference-body") - label - 8) / n)));
    const labelled = cell >= 9, font = Math.max(8, Math.min(12, cell - 2));
    const describe = (i, j) => `reading ${MODEL.dims[i].label} picks up ${fmt(matrix[i][j], 3)} of ${MODEL.dims[j].label}`;
    const table = el("table", { class: "heat inter", id: "interference-map" },
      el("caption", {}, `W W^T over the ${c.d_model} original features (rows: the feature read; columns: the feature picked up), grouped by SOp`),
      columns(label, n, cell));
    table.style.width = `${label + n * cell}px`;
    table.style.fontSize = `${font}px`;
    table.append(el("tr", {}, el("th", { class: "corner" }), MODEL.groups.map((g) => el("th", {
      class: "group", colspan: g.stop - g.start, data: { sop: g.sop }, title: g.sop,
      on: { click: () => selectSop(g.sop) } }, g.sop))));
    if (labelled) table.append(el("tr", {}, el("th", { class: "axis" }, "read \\ picked up"), MODEL.dims.map((d, j) => {
      const first = MODEL.groups.some((g) => g.start === j);
      return el("th", { class: "dim col" + (first ? " first" : ""), data: { sop: d.sop, dim: j }, title: `feature ${j}: ${d.label}`,
                        on: { click: () => selectDim(j) } }, d.value === "" ? d.sop : d.value);
    })));
    matrix.forEach((row, i) => {
      const d = MODEL.dims[i];
      const first = MODEL.groups.some((g) => g.start === i);
      const th = el("th", { class: "dim row" + (first ? " first" : ""), data: { sop: d.sop, dim: i },
                            title: `feature ${i}: ${d.label} (norm ${fmt(c.norms[i], 3)})`,
                            on: { click: () => selectDim(i) } }, labelled || first ? d.label : "");
      const tr = el("tr", {}, th, row.map((value, j) => {
        const start = MODEL.groups.some((g) => g.start === j);
        const td = el("td", { class: start ? "first" : null, data: { row: i, col: j, value } });
        td.style.backgroundColor = signed(value, scale);
        td.style.width = td.style.minWidth = td.style.height = `${cell}px`;
        if (cell >= 34 && Math.abs(Number(value)) >= 0.005) {
          td.textContent = fmt(value, 2);
          if (darkText(value, scale)) td.style.color = "#fff";
        }
        hoverable(td, () => describe(i, j));
        td.addEventListener("click", () => selectDim(i));
        return td;
      }));
      if (first) tr.classList.add("first");
      table.append(tr);
    });
    const pairs = el("table", { class: "grid", id: "interference-pairs" },
      el("tr", {}, el("th", {}, "feature i"), el("th", {}, "feature j"), el("th", {}, "W W^T (i, j)")),
      c.pairs.map(([i, j, a, b, value]) => el("tr", { data: { dim: i }, title: "select feature i",
                                                     on: { click: () => selectDim(i) } },
        el("td", {}, a), el("td", {}, b), el("td", {}, fmt(value, 3)))));
    document.getElementById("interference-body").replaceChildren(
      kv([["compressed width", `${c.d} of ${c.d_model}`], ["reads", c.reads],
          ["agreement with the exact model (training)", `${fmt(100 * c.agreement, 4)}%`],
          ["largest |W W^T| off the diagonal", fmt(c.max_interference, 3)],
          ["mean |W W^T| off the diagonal", fmt(c.mean_interference, 3)]]),
      el("h3", {}, "Strongest interference"),
      c.pairs.length ? pairs : el("p", { class: "empty" }, "none: no two features interfere"),
      legend("signed", scale || 1), table);
  }

  // --------------------------------------------------------------------- circuit

  // The model's nodes on the layer plan, left to right (embeddings, then each layer's
  // attention and MLP, then the output), one column per sublayer; the structural edges
  // drawn thin and dashed, the functional ones (those whose patch alone changes the output
  // on some pair) thick. Click an edge, on the drawing or in the table, to see its pair.
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(key, String(value));
    }
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(share) {
    return `${Math.round(100 * share)}%`;
  }

  function edgeEffect(edge, what) {
    if (edge.functional) return `changes the output on ${percent(edge.share)} of the ${what} (${edge.changed} of ${edge.tried})`;
    return `changes the output on none of the ${edge.tried} ${what}: structural only`;
  }

  function renderCircuit() {
    const c = MODEL.circuit;
    const body = document.getElementById("circuit-body");
    if (c.error) return body.replaceChildren(el("p", { class: "error", id: "circuit-error" }, c.error));
    const what = c.ablation === "resample" ? "pairs" : "inputs";
    const kept = c.edges.filter((e) => e.functional).length;
    const intro = el("p", { class: "note", id: "circuit-pairs" },
      `${c.edges.length} structural edges (of ${c.candidates} the layer order allows): a source writes residual ` +
      `dimensions the destination reads. Highlighted: the ${kept} functional edges, those whose patch alone ` +
      `changes the decoded output on some pair, measured here on ${c.pairs} with ${c.ablation} ablation ` +
      `(the page stops at ${c.cap} pairs to stay fast; \`rasp-compiler circuit ${MODEL.owner} --functional\` measures more). ` +
      "Click an edge to see one pair it changes.");
    const columns = c.columns.filter((col) => c.nodes.some((n) => n.position === col.position));
    const COL = 150, BOX_W = 104, BOX_H = 34, GAP = 30, TOP = 34, LEFT = 10;
    const rows = Math.max(1, ...columns.map((col) => c.nodes.filter((n) => n.position === col.position).length));
    const width = LEFT * 2 + (columns.length - 1) * COL + BOX_W;
    // An edge that skips columns dips below its row (deeper the more it skips), so it is
    // never drawn through the boxes between its ends; the last row leaves room for it.
    const dip = (skipped) => (skipped ? BOX_H / 2 + 8 + 6 * skipped : 0);
    const height = TOP + rows * (BOX_H + GAP) + 0.75 * dip(columns.length);
    const place = new Map();
    const drawing = svg("svg", { id: "circuit-map", viewBox: `0 0 ${width} ${height}`, width: "100%",
                                 role: "img", "aria-label": `the circuit of ${c.program}` });
    drawing.style.maxWidth = `${Math.max(width, 480)}px`;
    columns.forEach((col, i) => {
      const x = LEFT + i * COL;
      drawing.append(svg("text", { x: x + BOX_W / 2, y: 14, class: "column", "text-anchor": "middle" }, col.name));
      c.nodes.filter((n) => n.position === col.position).forEach((n, row) => {
        place.set(n.name, { x, y: TOP + row * (BOX_H + GAP) });
      });
    });
    const port = { q: -9, k: 0, v: 9, in: 0 };
    const edges = svg("g", { class: "edges" });
    for (const e of c.edges) {
      const a = place.get(e.source), b = place.get(e.destination);
      const x1 = a.x + BOX_W, y1 = a.y + BOX_H / 2, x2 = b.x, y2 = b.y + BOX_H / 2 + port[e.input];
      const bend = Math.max(30, (x2 - x1) / 2);
      const low = dip(Math.round((x2 - x1 - (COL - BOX_W)) / COL));
      const d = `M ${x1} ${y1} C ${x1 + bend} ${y1 + low}, ${x2 - bend} ${y2 + low}, ${x2} ${y2}`;
      const title = `${e.name}: ${edgeEffect(e, what)}`;
      const line = svg("path", { d, class: `edge ${e.functional ? "functional" : "structural"}`, "data-edge": e.name });
      const hit = svg("path", { d, class: "hit", "data-edge": e.name });
      hit.append(svg("title", {}, title));
      hit.addEventListener("click", () => selectEdge(e.name));
      edges.append(line, hit);
    }
    const nodes = svg("g", { class: "nodes" });
    for (const n of c.nodes) {
      const p = place.get(n.name);
      const cls = `node ${n.kind}${n.functional ? " functional" : n.structural ? "" : " unused"}`;
      const g = svg("g", { class: cls, "data-node": n.name, transform: `translate(${p.x} ${p.y})` });
      g.append(svg("title", {}, `${n.name}${n.computes.length ? `: computes ${n.computes.join(", ")}` : ""}` +
                                (n.structural ? "" : " (outside the circuit: no path from it to the output)")));
      g.append(svg("rect", { width: BOX_W, height: BOX_H, rx: 5 }));
      g.append(svg("text", { x: BOX_W / 2, y: 14, "text-anchor": "middle", class: "short" }, n.short));
      const computes = n.computes.join(", ");
      g.append(svg("text", { x: BOX_W / 2, y: 27, "text-anchor": "middle", class: "computes" },
                   computes.length > 18 ? computes.slice(0, 17) + "…" : computes));
      if (n.kind === "head") for (const x of ["q", "k", "v"])
        g.append(svg("text", { x: 3, y: BOX_H / 2 + port[x] + 3, class: "port" }, x));
      nodes.append(g);
    }
    drawing.append(edges, nodes);
    const table = el("table", { class: "grid", id: "circuit-edges" },
      el("tr", {}, el("th", {}, "edge (source -> destination [input])"), el("th", {}, "functional"),
         el("th", {}, `changes the output on (of ${what})`)),
      c.edges.map((e) => el("tr", { data: { edge: e.name }, class: e.functional ? "functional" : null,
                                    title: "show its example pair", on: { click: () => selectEdge(e.name) } },
        el("td", { class: "mono" }, e.name), el("td", {}, e.functional ? "yes" : "no"),
        el("td", {}, `${percent(e.share)} (${e.changed} of ${e.tried})`))));
    body.replaceChildren(intro,
      el("p", { class: "note", hidden: !c.note }, c.note),
      el("div", { class: "legend" }, el("span", { class: "functional-key" }, "functional edge"),
         el("span", { class: "structural-key" }, "structural only"), "node colours: kind; grey: outside the circuit"),
      el("div", { class: "fit circuit-frame" }, drawing),
      el("div", { id: "circuit-edge", class: "edge-detail", role: "status" }),
      el("h3", {}, "Every structural edge"),
      el("div", { class: "fit" }, table));
    const first = c.edges.find((e) => e.functional);
    selectEdge(state.edge || (first ? first.name : null));
  }

  function selectEdge(name) {
    state.edge = name;
    const c = MODEL.circuit;
    const detail = document.getElementById("circuit-edge");
    for (const node of document.querySelectorAll("#circuit [data-edge]"))
      node.classList.toggle("sel", node.dataset.edge === name);
    const edge = c.edges.find((e) => e.name === name);
    if (!edge) return detail.replaceChildren(el("p", { class: "note" }, "Click an edge to see its example pair."));
    const what = c.ablation === "resample" ? "pairs" : "inputs";
    const parts = [el("h3", { id: "circuit-edge-title" }, edge.name),
      kv([["from", edge.source], ["to", `${edge.destination}, at its input ${edge.input}`],
          ["functional", edge.functional ? "yes" : "no"],
          ["effect share", edgeEffect(edge, what)]])];
    const x = edge.example;
    if (x) {
      const row = (label, id, values) => el("tr", {}, el("th", {}, label),
        el("td", {}, el("code", { id }, values.join(" ") || "(empty)")));
      parts.push(el("table", { class: "grid", id: "circuit-example" },
        row("clean input", "example-clean", x.clean),
        row("its output", "example-clean-output", x.clean_output),
        x.corrupt ? row("corrupt input", "example-corrupt", x.corrupt) : null,
        x.corrupt_output ? row("its output", "example-corrupt-output", x.corrupt_output) : null,
        row(`clean run, this edge patched (${c.ablation})`, "example-patched-output", x.patched_output)));
    } else {
      parts.push(el("p", { class: "note", id: "circuit-no-example" },
        `No pair to show: patching this edge alone changed the output on none of the ${edge.tried} ${what} tried.`));
    }
    detail.replaceChildren(...parts);
  }

  // --------------------------------------------------------------------- selectors

  function renderSelectors() {
    const select = (selector) => {
      const head = HEADS.find((h) => h.selector === selector);
      if (head) selectHead(head.name);
    };
    const rows = MODEL.selectors.map((e) => el("tr", { data: { selector: e.selector }, title: "show its head",
                                                      on: { click: () => select(e.selector) } },
      el("td", {}, e.selector), el("td", { class: "mono" }, e.written), el("td", { class: "mono" }, e.normal_form),
      el("td", {}, `${e.construction}: ${e.cost}`),
      el("td", {}, e.alternatives.map(([n, c]) => el("div", {}, `${n}: ${c}`))),
      el("td", { class: e.flags.length ? "flag" : null }, e.flags.length ? e.flags.map((f) => el("div", {}, f)) : "-"),
      el("td", {}, e.heads.join(", "))));
    document.getElementById("selectors-body").replaceChildren(rows.length
      ? el("table", { class: "grid", id: "selector-table" },
           el("tr", {}, ["selector", "written", "normal form", "construction", "alternatives", "flags", "heads"].map((h) => el("th", {}, h))),
           rows)
      : el("p", { class: "empty" }, "no selectors"));
  }

  // --------------------------------------------------------------------- linking

  function selectHead(name) {
    state.head = name;
    const head = HEAD_BY_NAME.get(name);
    if (head) state.sop = null;
    renderHead();
  }

  function selectSop(label) {
    state.sop = label;
    state.dim = null;
    markSelection();
  }

  function selectDim(index) {
    state.sop = MODEL.dims[index].sop;
    state.dim = index;
    markSelection();
  }

  function markSelection() {
    const head = HEAD_BY_NAME.get(state.head);
    const reads = new Set(head ? head.reads : []);
    const writes = new Set(head ? head.writes : []);
    for (const node of document.querySelectorAll("[data-head]"))
      node.classList.toggle("sel", node.dataset.head === state.head);
    for (const node of document.querySelectorAll("[data-selector]"))
      node.classList.toggle("sel", !!head && node.dataset.selector === head.selector);
    for (const node of document.querySelectorAll(".chip"))
      node.classList.toggle("sel", node.dataset.sop === state.sop);
    for (const node of document.querySelectorAll("tr[data-sop]"))
      node.classList.toggle("sel", node.dataset.sop === state.sop || (!state.sop && writes.has(node.dataset.sop)));
    for (const node of document.querySelectorAll("#residual-map th.group")) {
      node.classList.toggle("sop-sel", node.dataset.sop === state.sop);
      node.classList.toggle("reads", reads.has(node.dataset.sop));
      node.classList.toggle("writes", writes.has(node.dataset.sop));
    }
    for (const node of document.querySelectorAll("#residual-map [data-dim]"))
      node.classList.toggle("dim-sel", state.dim !== null && node.dataset.dim === String(state.dim));
    const dim = state.dim === null ? null : String(state.dim);
    for (const node of document.querySelectorAll("#interference-map td"))
      node.classList.toggle("dim-sel", dim !== null && (node.dataset.row === dim || node.dataset.col === dim));
    for (const node of document.querySelectorAll("#interference-map th.dim, #interference-pairs tr[data-dim]"))
      node.classList.toggle("sel", dim !== null && node.dataset.dim === dim);
    for (const node of document.querySelectorAll("#interference-map th.group"))
      node.classList.toggle("sop-sel", node.dataset.sop === state.sop);
    for (const node of document.querySelectorAll(".box[data-head], .box[data-mlp]")) {
      const touches = !!state.sop && [...node.querySelectorAll(".chip")].some((c) => c.dataset.sop === state.sop);
      node.classList.toggle("touch", touches);
    }
  }

  function showView(view) {
    state.view = view;
    showError("");
    renderBanner(view);
    renderRun(view);
    renderHead();
    renderResidual();
  }

  renderFacts();
  renderPlan();
  renderCircuit();
  renderSelectors();
  if (MODEL.compression) renderInterference();
  renderInputForm();
  state.head = HEADS.length ? HEADS[0].name : null;
  const first = DATA.inputs[0];
  if (first.error !== undefined) { showError(first.error); renderHead(); } else showView(first);
  // The sized views follow the window: drawn again (selection kept) once a resize settles.
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      if (state.view) { renderHead(); renderResidual(); }
      if (MODEL.compression) renderInterference();
      markSelection();
    }, 150);
  });
  document.body.dataset.ready = "1";
})();
