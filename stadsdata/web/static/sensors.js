/* Sensor health: last seen, battery, completeness of the last 24 hours; late and stale Things first. */
"use strict";
(() => {
  const tbody = document.querySelector("#health tbody");
  const summary = document.getElementById("summary");
  const problems = document.getElementById("problems");
  const DAY = 86400000;
  let rows = [];

  function isBattery(ds) {
    const u = ds.unitOfMeasurement || {};
    return /battery/i.test(ds.name) || (ds.ObservedProperty && /battery/i.test(ds.ObservedProperty.name)) || (u.symbol === "V" && /volt/i.test(u.name || ""));
  }

  function assess(thing, counts, now) {
    const interval = Number((thing.properties || {}).interval_s) || 3600;
    const streams = thing.Datastreams || [];
    const last = Math.max(...streams.map((ds) => SD.timeEnd(ds.phenomenonTime) || -Infinity), -Infinity);
    const age = Number.isFinite(last) ? (now - last) / 1000 : Infinity;
    const status = age > 12 * interval ? "stale" : age > 3 * interval ? "late" : "ok";
    const battery = streams.find(isBattery);
    const bat = battery && battery.Observations && battery.Observations[0];
    const expected = streams.length * Math.floor(DAY / 1000 / interval);
    const got = streams.reduce((n, ds) => n + (counts.get(ds["@iot.id"]) || 0), 0);
    return { thing, status, last: Number.isFinite(last) ? last : null, battery: bat ? bat.result : null, batteryUnit: battery && battery.unitOfMeasurement,
      completeness: expected ? Math.min(1, got / expected) : null, got, expected };
  }

  function render() {
    const order = { stale: 0, late: 1, ok: 2 };
    const shown = rows.filter((r) => !problems.checked || r.status !== "ok")
      .sort((a, b) => order[a.status] - order[b.status] || (a.last || 0) - (b.last || 0));
    tbody.replaceChildren(...shown.map((r) => {
      const first = (r.thing.Datastreams || [])[0];
      const low = typeof r.battery === "number" && r.battery < 3.2;
      const pct = r.completeness == null ? null : Math.round(r.completeness * 100);
      return SD.el("tr", { class: r.status },
        SD.el("th", { scope: "row" }, first ? SD.el("a", { href: `/datastreams/${first["@iot.id"]}` }, r.thing.name) : r.thing.name,
          SD.simulated(r.thing) ? [" ", SD.el("span", { class: "tag sim" }, "simulated")] : null),
        SD.el("td", {}, SD.el("span", { class: `tag ${r.status}` }, r.status)),
        SD.el("td", { class: "num" }, SD.ago(r.last), SD.el("div", { class: "muted small" }, SD.time(r.last))),
        SD.el("td", { class: "num" }, r.battery == null ? SD.el("span", { class: "muted" }, "–") : [SD.value(r.battery, r.batteryUnit), low ? SD.el("strong", {}, " low") : null]),
        SD.el("td", { class: "num" }, pct == null ? "–" : [SD.el("span", { class: "bar", style: `width:${Math.max(2, pct / 2)}px`, "aria-hidden": "true" }), `${pct} %`,
          SD.el("div", { class: "muted small" }, `${r.got} of ${r.expected} readings`)]),
        SD.el("td", {}, SD.domainLabel(SD.domain(r.thing))));
    }));
    const n = (s) => rows.filter((r) => r.status === s).length;
    summary.textContent = `${rows.length} Things: ${n("ok")} reporting, ${n("late")} late, ${n("stale")} stale. Updated ${SD.time(Date.now())}.`;
  }

  problems.addEventListener("change", render);
  SD.every(15000, async () => {
    const now = Date.now();
    const since = new Date(now - DAY).toISOString();
    const [things, counted] = await Promise.all([
      SD.all("/v1.1/Things?$top=1000&$select=id,name,properties&$expand=Datastreams($select=id,name,phenomenonTime,unitOfMeasurement"
        + ";$expand=ObservedProperty($select=name),Observations($select=result;$orderby=phenomenonTime desc;$top=1))"),
      SD.all(`/v1.1/Observations?$apply=${encodeURIComponent(`filter(phenomenonTime ge ${since})/groupby((Datastream/@iot.id as ds),aggregate($count as n))`)}&$top=10000`),
    ]);
    const counts = new Map(counted.map((r) => [r.ds, r.n]));
    rows = things.map((t) => assess(t, counts, now));
    render();
  });
})();
