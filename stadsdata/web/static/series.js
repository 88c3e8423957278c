/* A Datastream's time series: zoomable chart (uPlot), time range, aggregation ($apply), live updates. */
"use strict";
(() => {
  const id = Number(document.body.dataset.datastream);
  const base = `/v1.1/Datastreams(${id})`;
  const rangeSel = document.getElementById("range");
  const aggSel = document.getElementById("agg");
  const liveBox = document.getElementById("live");
  const chartBox = document.getElementById("chart");
  const latestValue = document.getElementById("latest-value");
  const latestTime = document.getElementById("latest-time");
  const pointsNote = document.getElementById("points");
  const recent = document.querySelector("#recent tbody");
  const RAW_LIMIT = 50000;
  let meta = null, unit = {}, chart = null, data = [[], []], zoomed = false, newest = null, lastLoad = 0, loading = false;

  const fromUrl = new URL(location.href).searchParams;
  if (fromUrl.get("range")) rangeSel.value = fromUrl.get("range");
  if (fromUrl.get("agg")) aggSel.value = fromUrl.get("agg");

  function remember() {
    const url = new URL(location.href);
    url.searchParams.set("range", rangeSel.value);
    url.searchParams.set("agg", aggSel.value);
    history.replaceState(null, "", url);
  }

  async function loadMeta() {
    meta = await SD.api(`${base}?$expand=Thing($select=id,name,properties),ObservedProperty($select=name,description),Sensor($select=name)`);
    unit = meta.unitOfMeasurement || {};
    document.getElementById("ds-name").textContent = meta.name;
    document.title = `${meta.name} · stadsdata Enschede`;
    const about = document.getElementById("ds-about");
    about.replaceChildren(
      `${(meta.ObservedProperty || {}).name || ""} in ${unit.name || "?"}${SD.symbol(unit) ? " (" + SD.symbol(unit) + ")" : ""}`,
      meta.Thing ? ` · Thing: ${meta.Thing.name}` : "",
      meta.Sensor ? ` · Sensor: ${meta.Sensor.name}` : "",
      ...(SD.simulated(meta) || SD.simulated(meta.Thing) ? [" ", SD.el("span", { class: "tag sim" }, "simulated")] : []));
  }

  async function loadLatest() {
    const page = await SD.api(`${base}/Observations?$top=20&$orderby=phenomenonTime desc&$select=phenomenonTime,result`);
    const rows = page.value;
    const first = rows[0];
    const t = first ? SD.timeEnd(first.phenomenonTime) : null;
    if (t !== newest) {
      const changed = newest !== null;
      newest = t;
      latestValue.textContent = first ? SD.value(first.result, unit) : "no readings yet";
      latestValue.dataset.time = first ? first.phenomenonTime : "";
      latestTime.textContent = first ? `at ${SD.time(t)} (${SD.ago(t)})` : "";
      if (changed) { latestValue.classList.remove("updated"); void latestValue.offsetWidth; latestValue.classList.add("updated"); }
      recent.replaceChildren(...rows.map((o) => SD.el("tr", {}, SD.el("td", { class: "num" }, SD.time(SD.timeEnd(o.phenomenonTime))), SD.el("td", { class: "num" }, SD.value(o.result, unit)))));
      return changed;
    }
    latestTime.textContent = t ? `at ${SD.time(t)} (${SD.ago(t)})` : "";
    return false;
  }

  function window_() {
    const end = newest || Date.now();
    return [end - Number(rangeSel.value) * 1000, end];
  }

  async function loadRaw(sinceMs) {
    const filter = `phenomenonTime gt ${new Date(sinceMs).toISOString()}`;
    const found = await SD.all(`${base}/Observations?$filter=${encodeURIComponent(filter)}&$orderby=phenomenonTime asc&$top=10000&$select=phenomenonTime,result`, RAW_LIMIT);
    const xs = [], ys = [];
    for (const o of found) {
      if (typeof o.result !== "number") continue;
      xs.push(SD.timeEnd(o.phenomenonTime) / 1000);
      ys.push(o.result);
    }
    return [xs, ys];
  }

  async function loadAggregated(sinceMs, step) {
    const apply = `filter(phenomenonTime ge ${new Date(sinceMs).toISOString()})`
      + `/groupby((bucket(phenomenonTime,duration'${step}','${SD.ZONE}') as t),`
      + `aggregate(result with average as mean,result with min as min,result with max as max))`;
    const found = await SD.all(`${base}/Observations?$apply=${encodeURIComponent(apply)}&$top=10000`);
    const xs = [], mean = [], min = [], max = [];
    for (const row of found) {
      xs.push(Date.parse(row.t) / 1000);
      mean.push(row.mean); min.push(row.min); max.push(row.max);
    }
    return [xs, mean, min, max];
  }

  const dayFmt = new Intl.DateTimeFormat("en-GB", { timeZone: SD.ZONE, day: "numeric", month: "short" });
  const hourFmt = new Intl.DateTimeFormat("en-GB", { timeZone: SD.ZONE, hour: "2-digit", minute: "2-digit" });
  /** An x-axis label in Enschede's time: the date at midnight and for steps of a day or more, else hh:mm. */
  function axisLabel(seconds, step) {
    const d = new Date(seconds * 1000);
    const clock = hourFmt.format(d);
    return step >= 86400 || clock === "00:00" ? dayFmt.format(d) : clock;
  }

  function series() {
    const label = `${(meta && meta.ObservedProperty && meta.ObservedProperty.name) || "value"}${SD.symbol(unit) ? " (" + SD.symbol(unit) + ")" : ""}`;
    const fmt = (u, v) => (v == null ? "–" : SD.value(v, unit));
    if (aggSel.value === "raw") return [{}, { label, stroke: "#1f6fb2", width: 1.5, value: fmt, points: { show: true, size: 3 } }];
    return [{},
      { label: `mean ${label}`, stroke: "#1f6fb2", width: 2, value: fmt },
      { label: "min", stroke: "#8fb6d8", width: 1, dash: [4, 4], value: fmt },
      { label: "max", stroke: "#8fb6d8", width: 1, dash: [4, 4], value: fmt }];
  }

  function draw() {
    if (chart) { chart.destroy(); chart = null; }
    const width = Math.max(280, chartBox.clientWidth);
    const height = window.innerWidth < 800 ? 260 : 360;
    chart = new uPlot({
      width, height,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), SD.ZONE),
      series: series(),
      axes: [{ values: (u, splits, axis, space, step) => splits.map((s) => axisLabel(s, step)) }, { size: 60, values: (u, vals) => vals.map((v) => SD.value(v, {})) }],
      cursor: { drag: { x: true, y: false } },
      hooks: { setSelect: [(u) => { if (u.select.width > 0) zoomed = true; }] },
    }, data, chartBox);
    chart.over.addEventListener("dblclick", () => { zoomed = false; });
    window.sdSeries = chart;
    pointsNote.textContent = `${data[0].length} ${aggSel.value === "raw" ? "readings" : "buckets"} shown.`;
    chartBox.setAttribute("aria-label", `Chart of ${meta ? meta.name : "the Datastream"}: ${data[0].length} points; the same values are in the table below.`);
  }

  async function load() {
    if (loading) return;
    loading = true;
    try {
      const [start] = window_();
      data = aggSel.value === "raw" ? await loadRaw(start - 1) : await loadAggregated(start, aggSel.value);
      zoomed = false;
      lastLoad = Date.now();
      draw();
    } finally { loading = false; }
  }

  async function tick() {
    if (!liveBox.checked || loading) return;
    const changed = await loadLatest();
    if (!changed) return;
    if (aggSel.value === "raw") {
      const xs = data[0];
      const since = xs.length ? xs[xs.length - 1] * 1000 : window_()[0];
      const [nx, ny] = await loadRaw(since);
      if (!nx.length) return;
      data = [xs.concat(nx), data[1].concat(ny)];
      const [start] = window_();
      while (data[0].length && data[0][0] * 1000 < start) { data[0].shift(); data[1].shift(); }
      chart.setData(data, !zoomed);
      pointsNote.textContent = `${data[0].length} readings shown.`;
    } else if (Date.now() - lastLoad > 30000) {
      await load();
    }
  }

  rangeSel.addEventListener("change", () => { remember(); load(); });
  aggSel.addEventListener("change", () => { remember(); load(); });
  let resizeTimer = null;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(draw, 200); });

  (async () => {
    try {
      await loadMeta();
      await loadLatest();
      await load();
      SD.every(5000, tick);
    } catch (e) {
      chartBox.replaceChildren(SD.el("p", { role: "alert" }, "The time series could not be loaded: " + e.message));
    }
  })();
})();
