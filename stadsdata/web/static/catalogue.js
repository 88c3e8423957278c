/* The catalogue: every Datastream with its Thing, unit, owner and licence; searchable as you type. */
"use strict";
(() => {
  const input = document.getElementById("q");
  const tbody = document.querySelector("#catalogue tbody");
  const count = document.getElementById("count");
  let rows = [];

  function prop(entity, ...names) {
    const p = (entity && entity.properties) || {};
    for (const n of names) if (p[n] != null) return String(p[n]);
    return "";
  }

  function build(ds) {
    const thing = ds.Thing || {};
    const unit = ds.unitOfMeasurement || {};
    const owner = prop(ds, "owner") || prop(thing, "owner");
    const licence = prop(ds, "licence", "license") || prop(thing, "licence", "license");
    const newest = SD.timeEnd(ds.phenomenonTime);
    const tr = SD.el("tr", {},
      SD.el("td", {}, SD.el("a", { href: `/datastreams/${ds["@iot.id"]}` }, ds.name),
        SD.simulated(ds) || SD.simulated(thing) ? [" ", SD.el("span", { class: "tag sim" }, "simulated")] : null,
        ds.description ? SD.el("div", { class: "muted small" }, ds.description) : null),
      SD.el("td", {}, thing.name || "", prop(thing, "neighbourhood") ? SD.el("div", { class: "muted small" }, prop(thing, "neighbourhood")) : null),
      SD.el("td", {}, (ds.ObservedProperty || {}).name || ""),
      SD.el("td", {}, SD.symbol(unit) ? `${unit.name || ""} (${SD.symbol(unit)})` : unit.name || ""),
      SD.el("td", {}, owner || SD.el("span", { class: "muted" }, "not stated")),
      SD.el("td", {}, licence || SD.el("span", { class: "muted" }, "not stated")),
      SD.el("td", { class: "num" }, SD.time(newest)));
    const text = [ds.name, ds.description, thing.name, thing.description, (ds.ObservedProperty || {}).name, (ds.Sensor || {}).name,
      unit.name, unit.symbol, owner, licence, prop(thing, "neighbourhood"), prop(thing, "domain"), prop(thing, "device_id"),
      SD.simulated(thing) ? "simulated" : ""].join(" ").toLowerCase().replace(/\s+/g, " ");
    return { tr, text };
  }

  function show() {
    // The query as a phrase ("pathmos 2"); when no row has the phrase, rows that have all its words.
    const phrase = input.value.toLowerCase().trim().replace(/\s+/g, " ");
    const words = phrase.split(" ").filter(Boolean);
    const asPhrase = rows.some((row) => row.text.includes(phrase));
    let n = 0;
    for (const row of rows) {
      const hit = asPhrase ? row.text.includes(phrase) : words.every((w) => row.text.includes(w));
      row.tr.hidden = !hit;
      if (hit) n++;
    }
    count.textContent = words.length ? `${n} of ${rows.length} Datastreams match “${input.value.trim()}”` : `${rows.length} Datastreams`;
    const url = new URL(location.href);
    if (input.value.trim()) url.searchParams.set("q", input.value.trim()); else url.searchParams.delete("q");
    history.replaceState(null, "", url);
  }

  input.value = new URL(location.href).searchParams.get("q") || "";
  input.addEventListener("input", show);
  count.textContent = "Loading…";
  SD.all("/v1.1/Datastreams?$top=1000&$orderby=id&$select=id,name,description,unitOfMeasurement,phenomenonTime,properties"
    + "&$expand=Thing($select=id,name,description,properties),ObservedProperty($select=name),Sensor($select=name)")
    .then((found) => {
      rows = found.map(build);
      tbody.replaceChildren(...rows.map((r) => r.tr));
      show();
    })
    .catch((e) => { count.textContent = "The catalogue could not be loaded: " + e.message; });
})();
