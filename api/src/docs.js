// Interactive docs for the edgeml api, rendered from /api/openapi.json (no external assets:
// the page works offline and under the server's strict CSP).
"use strict";

const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};

function resolve(doc, schema) {
  if (schema && schema.$ref) return doc.components.schemas[schema.$ref.split("/").pop()] || {};
  return schema || {};
}

function example(doc, schema, depth = 0) {
  schema = resolve(doc, schema);
  if (depth > 4) return null;
  if (schema.example !== undefined) return schema.example;
  if (schema.oneOf) return example(doc, schema.oneOf.find((s) => s.type !== "null") || {}, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (schema.enum) return schema.enum[0];
  if (type === "object" || schema.properties) {
    const out = {};
    for (const [k, v] of Object.entries(schema.properties || {})) out[k] = example(doc, v, depth + 1);
    return out;
  }
  if (type === "array") return [example(doc, schema.items, depth + 1)];
  if (type === "integer" || type === "number") return 0;
  if (type === "boolean") return false;
  return "";
}

function operation(doc, path, method, op) {
  const secured = (op.security || []).some((s) => Object.keys(s).length > 0);
  const open = (op.security || []).some((s) => Object.keys(s).length === 0);
  const summary = el("summary", {},
    el("span", { class: `m ${method}` }, method.toUpperCase()),
    el("span", { class: "path" }, path),
    el("span", { class: "sum" }, op.summary || op.description || ""),
    secured ? el("span", { class: "lock" }, open ? "🔓 token optional" : "🔒 admin") : "");
  const body = el("div", { class: "body" });
  if (op.description) body.append(el("p", {}, op.description));
  const inputs = {};
  for (const p of op.parameters || []) {
    const i = el("input", { type: "text", placeholder: p.description || "" });
    inputs[p.name] = { p, i };
    body.append(el("label", {}, `${p.name} (${p.in}${p.required ? ", required" : ""})`), i);
  }
  let jsonBody = null;
  let fileInput = null;
  let labelInput = null;
  const content = op.requestBody && op.requestBody.content;
  if (content && content["application/json"]) {
    jsonBody = el("textarea");
    jsonBody.value = JSON.stringify(example(doc, content["application/json"].schema), null, 2);
    body.append(el("label", {}, "JSON body"), jsonBody);
  } else if (content && content["multipart/form-data"]) {
    const props = resolve(doc, content["multipart/form-data"].schema).properties || {};
    if (props.label) {
      labelInput = el("input", { type: "text" });
      body.append(el("label", {}, "label"), labelInput);
    }
    fileInput = el("input", { type: "file", accept: "image/*" });
    if (props.files) fileInput.multiple = true;
    body.append(el("label", {}, props.files ? "files" : "file"), fileInput);
  }
  const responses = el("table");
  for (const [code, r] of Object.entries(op.responses || {})) {
    responses.append(el("tr", {}, el("td", {}, code), el("td", {}, r.description || "")));
  }
  const out = el("pre", { hidden: "" });
  const run = el("button", {}, "Try it");
  run.onclick = async () => {
    let url = path;
    const query = new URLSearchParams();
    const headers = {};
    for (const { p, i } of Object.values(inputs)) {
      if (!i.value) continue;
      if (p.in === "path") url = url.replace(`{${p.name}}`, encodeURIComponent(i.value));
      else if (p.in === "query") query.set(p.name, i.value);
      else if (p.in === "header") headers[p.name] = i.value;
    }
    if ([...query].length) url += `?${query}`;
    const token = document.getElementById("token").value.trim();
    if (token && secured) headers.Authorization = `Bearer ${token}`;
    const init = { method: method.toUpperCase(), headers };
    if (jsonBody) { headers["Content-Type"] = "application/json"; init.body = jsonBody.value; }
    if (fileInput) {
      const fd = new FormData();
      if (labelInput) fd.append("label", labelInput.value);
      for (const f of fileInput.files) fd.append(fileInput.multiple ? "files" : "file", f, f.name);
      init.body = fd;
    }
    out.hidden = false;
    out.textContent = `${init.method} ${url} …`;
    const t0 = performance.now();
    try {
      const r = await fetch(url, init);
      const ms = (performance.now() - t0).toFixed(0);
      const type = r.headers.get("content-type") || "";
      let text;
      if (type.includes("event-stream")) text = "(an event stream: open it with EventSource; the first events follow)\n" + (await r.text()).slice(0, 4000);
      else if (type.includes("json")) text = JSON.stringify(await r.json(), null, 2);
      else if (type.startsWith("text/") || type.includes("svg")) text = (await r.text()).slice(0, 20000);
      else text = `${(await r.arrayBuffer()).byteLength} bytes of ${type}`;
      out.textContent = `${r.status} ${r.statusText} in ${ms} ms\n\n${text}`;
    } catch (e) {
      out.textContent = `request failed: ${e}`;
    }
  };
  body.append(el("label", {}, "Responses"), responses, run, out);
  return el("details", {}, summary, body);
}

async function main() {
  const ops = document.getElementById("ops");
  const doc = await (await fetch("/api/openapi.json")).json();
  ops.textContent = "";
  ops.append(el("p", {}, doc.info.description || ""));
  const byTag = new Map((doc.tags || []).map((t) => [t.name, []]));
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ["other"])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push(operation(doc, path, method, op));
    }
  }
  const descr = Object.fromEntries((doc.tags || []).map((t) => [t.name, t.description]));
  for (const [tag, list] of byTag) {
    if (!list.length) continue;
    ops.append(el("h2", {}, `${tag}${descr[tag] ? " — " + descr[tag] : ""}`), ...list);
  }
}

main().catch((e) => { document.getElementById("ops").textContent = `could not load the API description: ${e}`; });
