// The model explorer's page script (explorer.py inlines it; its hash is in the page's CSP).
//
// Python computed everything; this script draws the JSON in #explorer-data and links the
// views. Every string from the model or the input is written with text nodes (el() below)
// and never parsed as HTML. State: the current input's view, the selected head, the
// selected SOp (and residual dimension), the residual step shown.
"use strict";

(function () {
  const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
  const MODEL = DATA.model;
  const state = { view: null, head: null, sop: null, dim: null, step: 0 };
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

  function blue(weight) {
    const w = Math.max(0, Math.min(1, Number(weight)));
    const r = Math.round(255 - 215 * w), g = Math.round(255 - 165 * w), b = Math.round(255 - 75 * w);
    return `rgb(${r}, ${g}, ${b})`;
  }

  function diverging(value, scale) {
    const v = Math.max(-1, Math.min(1, Number(value) / (scale || 1)));
    if (v >= 0) return `rgb(${Math.round(255 - 200 * v)}, ${Math.round(255 - 140 * v)}, 255)`;
    return `rgb(255, ${Math.round(255 + 150 * v)}, ${Math.round(255 + 180 * v)})`;
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

  // --------------------------------------------------------------------- skeleton

  const app = document.getElementById("app");
  const banner = el("div", { id: "banner", class: "banner", role: "alert", hidden: true });
  const hover = el("div", { class: "hover", id: "hover" }, "hover a cell to read its value");
  app.append(
    el("header", {}, el("h1", {}, `${MODEL.title}: model explorer`),
       el("p", {}, DATA.mode === "server"
         ? "Live: type an input below; the page runs it through the compiled model and the evaluator."
         : "Static page: the views for the inputs saved in it. `rasp-compiler explore` runs any input.")),
    el("main", {},
       banner,
       MODEL.has_program ? null : el("p", { class: "note", id: "no-program" }, MODEL.no_program_note),
       section("input", "Input, output and every SOp's value", el("div", { id: "input-body" })),
       section("plan", "Layer plan", el("p", { class: "note" },
         "Left to right: the embeddings, then each layer's attention heads and MLP parts, with the " +
         "residual SOps (and dimension ranges) each reads and writes. Click a head to see it; click an " +
         "SOp to highlight where it is written and read."), el("div", { id: "plan-body" })),
       section("head", "Attention head", el("div", { id: "head-body" })),
       section("residual", "Residual stream", el("div", { id: "residual-body" })),
       MODEL.compression ? section("interference", "Interference (compressed model)",
         el("p", { class: "note" },
           `This model runs the compiled transformer through a ${MODEL.compression.d}-dimensional ` +
           `residual (W: ${MODEL.compression.d_model} x ${MODEL.compression.d}). Entry (i, j) of W W^T is ` +
           "how much reading feature i picks up of feature j: the identity without compression, " +
           "superposition off the diagonal. Click a dimension to select it everywhere."),
         el("div", { id: "interference-body" })) : null,
       section("selectors", "Selector report", el("div", { id: "selectors-body" })),
       section("facts", "Compile facts", el("div", { id: "facts-body" })),
       hover));

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
      el("div", { class: "name" }, `${head.name} · ${head.kind}`),
      el("div", {}, "computes ", chip(head.writes[0] || head.label)),
      el("div", {}, `selector ${head.selector}:`),
      el("div", { class: "expr" }, head.expression),
      el("div", {}, "reads ", head.reads.length ? head.reads.map(chip) : "bos only"),
      flags);
  }

  function mlpBox(part) {
    return el("div", { class: "box mlp", data: { mlp: part.id } },
      el("div", { class: "name" }, `MLP [${part.start}:${part.stop}] · ${part.construction}`),
      part.units.length ? el("div", { class: "expr" }, `computes ${part.units.join(", ")}`) : null,
      el("div", {}, "reads ", part.reads.length ? part.reads.map(chip) : "-"),
      el("div", {}, "writes ", part.writes.length ? part.writes.map(chip) : "-"));
  }

  function renderPlan() {
    const plan = el("div", { class: "plan" });
    const embedded = MODEL.sops.filter((s) => s.time === 0).map((s) => s.label);
    const special = MODEL.groups.filter((g) => g.sop === "one" || g.sop === "bos").map((g) => g.sop);
    plan.append(el("div", { class: "column" }, el("div", { class: "caption" }, "embeddings"),
      el("div", { class: "box embed" }, el("div", {}, "writes "), [...special, ...embedded].map(chip))));
    for (const layer of MODEL.layers) {
      plan.append(
        el("div", { class: "column", data: { layer: layer.index } },
           el("div", { class: "caption" }, `layer ${layer.index} attention`),
           layer.heads.length ? layer.heads.map(headBox) : el("div", { class: "empty" }, "no heads")),
        el("div", { class: "column" },
           el("div", { class: "caption" }, `layer ${layer.index} MLP (${layer.mlp_hidden} neurons)`),
           layer.mlp.length ? layer.mlp.map(mlpBox) : el("div", { class: "empty" }, "empty")));
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
    const form = el("div", {}, el("label", { for: "tokens" }, "Tokens (separated by spaces): "), box, " ", run);
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
                error, el("div", { id: "run-result" }));
  }

  function showError(message) {
    const box = document.getElementById("input-error");
    box.textContent = message;
    box.hidden = !message;
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

  function renderRun(view) {
    const result = document.getElementById("run-result");
    const output = el("p", {}, "output: ", el("code", { id: "output" }, view.output.join(" ")));
    const parts = [el("p", {}, "input: ", el("code", { id: "input-shown" }, view.words.join(" "))), output];
    if (view.exact_output) parts.push(el("p", {}, "exact (uncompressed) model: ",
      el("code", { id: "exact-output" }, view.exact_output.join(" "))));
    if (view.expected) parts.push(el("p", {}, "evaluator: ", el("code", { id: "expected" }, view.expected.join(" ")),
      view.problems.length ? null : el("span", { class: "ok" }, "  agrees")));
    if (view.evaluator_error) parts.push(el("p", { class: "error" }, `the evaluator has no answer here: ${view.evaluator_error}`));
    const head = el("tr", {}, el("th", {}, "SOp"), el("th", {}, "read after"),
      view.words.map((w, i) => el("th", {}, `${i}: ${w}`)));
    const rows = view.sops.map((s) => {
      const meta = MODEL.sops.find((m) => m.label === s.label);
      return el("tr", { data: { sop: s.label }, on: { click: () => selectSop(s.label) } },
        el("th", {}, s.label), el("td", {}, meta ? meta.written_after : ""),
        s.values.map((v, i) => {
          const bad = s.agree && !s.agree[i];
          const title = s.expected ? `evaluator: ${s.expected[i]}` : "no evaluator (loaded model)";
          return el("td", { class: bad ? "bad" : null, title, data: { position: i } }, v);
        }));
    });
    parts.push(el("h3", {}, "Read-back: every SOp decoded right after the sublayer that writes it"),
      el("table", { class: "grid", id: "sop-values" }, head, rows));
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
        `The compressed model differs from the evaluator on this input (${view.problems.length} ` +
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

  function heatmap(matrix, caption, positions, opts) {
    const table = el("table", { class: "heat" + (opts.extraClass ? " " + opts.extraClass : ""), data: opts.data || {} },
      el("caption", {}, caption));
    table.append(el("tr", {}, el("th", { class: "axis" }, "query \\ key"), positions.map((p, k) => el("th", {}, `${k}:${p}`))));
    matrix.forEach((row, q) => {
      table.append(el("tr", {}, el("th", {}, `${q}:${positions[q]}`), row.map((value, k) => {
        const masked = opts.causal && k > q;
        const td = el("td", { class: masked ? "masked" : null, data: { q, k, value },
                              title: opts.describe(q, k) });
        td.style.backgroundColor = blue(value);
        if (Number(value) > 0.6) td.style.color = "#fff";
        if (Number(value) > 0.005 && positions.length <= 12) td.textContent = fmt(value, 2);
        td.addEventListener("mouseenter", () => { hover.textContent = opts.describe(q, k); });
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
      let text = `${head.name} query ${q} (${positions[q]}) -> key ${k} (${positions[k]}): weight ${fmt(data.compiled[q][k])}, logit ${fmt(data.scores[q][k], 5)}`;
      if (data.ideal) text += `, ideal ${fmt(data.ideal[q][k])}`;
      if (MODEL.causal && k > q) text += " (masked: a causal query sees no later key)";
      return text;
    };
    const maps = el("div", { class: "maps" },
      heatmap(data.compiled, `compiled pattern (${head.hook})`, positions,
              { describe, causal: MODEL.causal, data: { which: "compiled" } }),
      data.ideal ? heatmap(data.ideal, "ideal pattern (from the evaluator)", positions,
                           { describe, causal: MODEL.causal, data: { which: "ideal" } })
                 : el("p", { class: "note" }, "ideal pattern: needs the program (see the note above)"));
    if (MODEL.causal) {
      const mask = positions.map((_, q) => positions.map((__, k) => (k <= q ? 1 : 0)));
      maps.append(heatmap(mask, "causal mask (1: key visible)", positions,
        { describe: (q, k) => `query ${q} ${k <= q ? "sees" : "does not see"} key ${k}`, data: { which: "mask" } }));
    }
    const facts = [
      ["head", `${head.name} (${head.kind}) computes ${head.label}`],
      ["selector", head.selector],
      ["written", entry ? entry.written : head.expression],
      ["normal form", entry ? entry.normal_form : "-"],
      ["construction", entry ? `${entry.construction}: ${entry.cost}` : "-"],
      ["query / key / value read", `${head.queries.join(", ") || "-"} / ${head.keys.join(", ") || "-"} / ${head.values.join(", ") || "bos"}`],
      ["coldness", fmt(head.coldness, 4)],
      ["logit margin (this input)", data.margin === null ? "needs the program" : fmt(data.margin, 5)],
      ["BOS leak (this input)", data.bos_leak === null ? "needs the program" : fmt(data.bos_leak, 3)],
      ["max deviation from ideal", data.max_deviation === null ? "needs the program" : fmt(data.max_deviation, 3)],
    ];
    if (entry) for (const [name, cost] of entry.alternatives) facts.push(["alternative", `${name}: ${cost}`]);
    body.append(el("h3", { id: "head-title" }, `${head.name}: ${head.label} <- ${head.expression}`), kv(facts));
    if (entry && entry.flags.length) body.append(el("ul", { class: "flag" }, entry.flags.map((f) => el("li", {}, f))));
    body.append(maps);
    markSelection();
  }

  // --------------------------------------------------------------------- residual stream

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
    const table = el("table", { class: "heat resid", id: "residual-map" },
      el("caption", {}, `residual after ${MODEL.steps[state.step]}: positions x dimensions, grouped by SOp`));
    table.append(el("tr", {}, el("th", {}),
      MODEL.groups.map((g) => el("th", { class: "group", colspan: g.stop - g.start, data: { sop: g.sop },
                                         title: `${g.sop}: written by ${g.written_by}; read by ${g.read_by.join(", ") || "-"}`,
                                         on: { click: () => selectSop(g.sop) } }, g.sop))));
    table.append(el("tr", {}, el("th", { class: "axis" }, "position"), MODEL.dims.map((d, i) => {
      const first = MODEL.groups.some((g) => g.start === i);
      return el("th", { class: "dim" + (first ? " first" : ""), data: { sop: d.sop, dim: i }, title: `dimension ${i}: ${d.label}`,
                        on: { click: () => selectDim(i) } }, d.value === "" ? d.sop : d.value);
    })));
    matrix.forEach((row, q) => table.append(el("tr", {}, el("th", {}, `${q}:${positions[q]}`), row.map((value, i) => {
      const d = MODEL.dims[i];
      const first = MODEL.groups.some((g) => g.start === i);
      const describe = `position ${q} (${positions[q]}), dimension ${i} ${d.label}: ${fmt(value)}`;
      const td = el("td", { class: first ? "first" : null, data: { sop: d.sop, dim: i, q, value }, title: describe });
      td.style.backgroundColor = diverging(value, scale);
      td.addEventListener("mouseenter", () => { hover.textContent = describe; });
      return td;
    }))));
    const decoded = state.view.decoded[state.step];
    const rows = MODEL.sops.map((s) => el("tr", { data: { sop: s.label } },
      el("th", {}, s.label), el("td", {}, s.written_after),
      decoded[s.label].map((v) => el("td", { class: s.time > state.step ? "later" : null,
                                             title: s.time > state.step ? `not written yet (written after ${s.written_after})` : null }, v))));
    body.replaceChildren(steps,
      el("div", { class: "legend" }, el("span", { class: "reads" }, "read by the selected head"),
         el("span", { class: "writes" }, "written by it"), el("span", { class: "sop-sel" }, "the selected SOp"),
         "click an SOp or a dimension to select it; hover a cell for its value"),
      table,
      el("h3", {}, `Decoded at this step (grey: not written yet)`),
      el("table", { class: "grid", id: "decoded" },
         el("tr", {}, el("th", {}, "SOp"), el("th", {}, "written after"), positions.slice(1).map((p, i) => el("th", {}, `${i}: ${p}`))),
         rows));
    markSelection();
  }

  // --------------------------------------------------------------------- interference

  function renderInterference() {
    const c = MODEL.compression;
    const matrix = c.interference;
    let scale = 0;
    for (const row of matrix) for (const v of row) if (typeof v === "number") scale = Math.max(scale, Math.abs(v));
    const describe = (i, j) => `reading ${MODEL.dims[i].label} picks up ${fmt(matrix[i][j], 3)} of ${MODEL.dims[j].label}`;
    const table = el("table", { class: "heat inter", id: "interference-map" },
      el("caption", {}, `W W^T over the ${c.d_model} original features, grouped by SOp (colour scale ±${fmt(scale, 3)})`));
    table.append(el("tr", {}, el("th", {}), MODEL.groups.map((g) => el("th", {
      class: "group", colspan: g.stop - g.start, data: { sop: g.sop }, title: g.sop,
      on: { click: () => selectSop(g.sop) } }, g.stop - g.start > 2 ? g.sop : ""))));
    matrix.forEach((row, i) => {
      const d = MODEL.dims[i];
      table.append(el("tr", {}, el("th", { class: "dim", data: { sop: d.sop, dim: i }, title: `dimension ${i}: ${d.label} (norm ${fmt(c.norms[i], 3)})`,
                                           on: { click: () => selectDim(i) } }, d.label),
        row.map((value, j) => {
          const first = MODEL.groups.some((g) => g.start === j);
          const td = el("td", { class: first ? "first" : null, data: { row: i, col: j, value }, title: describe(i, j) });
          td.style.backgroundColor = diverging(value, scale);
          td.addEventListener("mouseenter", () => { hover.textContent = describe(i, j); });
          td.addEventListener("click", () => selectDim(i));
          return td;
        })));
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
      el("div", { class: "scroll" }, table));
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
  renderSelectors();
  if (MODEL.compression) renderInterference();
  renderInputForm();
  state.head = HEADS.length ? HEADS[0].name : null;
  const first = DATA.inputs[0];
  if (first.error !== undefined) { showError(first.error); renderHead(); } else showView(first);
  document.body.dataset.ready = "1";
})();
