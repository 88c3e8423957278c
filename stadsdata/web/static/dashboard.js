/* stadsdata dashboard: what every page shares. The pages read only the public SensorThings API. */
"use strict";
const SD = (() => {
  const ZONE = "Europe/Amsterdam";
  const timeFmt = new Intl.DateTimeFormat("en-GB", { timeZone: ZONE, day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const DOMAINS = { "groundwater": "Groundwater", "passers-by": "Passers-by", "parking": "Parking", "air-quality": "Air quality", "cycling": "Cycling" };

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).message || message; } catch (e) { /* not JSON */ }
      throw new Error(`${response.status} ${message} (${path})`);
    }
    return response.json();
  }

  /** Every entity of a collection, following @iot.nextLink (at most `limit`). */
  async function all(path, limit = 10000) {
    let page = await api(path);
    const found = [...page.value];
    while (page["@iot.nextLink"] && found.length < limit) {
      const next = new URL(page["@iot.nextLink"]);
      page = await api(next.pathname + next.search);
      found.push(...page.value);
    }
    return found;
  }

  /** The end of a phenomenonTime (an instant or "start/end") in ms, or null. */
  function timeEnd(value) {
    if (!value) return null;
    const parts = String(value).split("/");
    return Date.parse(parts[parts.length - 1]);
  }

  function time(ms) { return ms == null || Number.isNaN(ms) ? "never" : timeFmt.format(new Date(ms)); }

  function ago(ms) {
    if (ms == null) return "never";
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 5) return "just now";
    if (s < 90) return `${s} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }

  function value(v, unit) {
    if (v == null) return "–";
    let text = typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) >= 100 ? 1 : Math.abs(v) >= 10 ? 2 : 3).replace(/\.?0+$/, "")) : JSON.stringify(v);
    const sym = symbol(unit);
    return sym ? `${text} ${sym}` : text;
  }

  /** A unit's symbol for people: UCUM annotations shown without braces ({people}/5min → people/5min). */
  function symbol(unit) { return unit && unit.symbol ? String(unit.symbol).replace(/\{([^}]*)\}/g, "$1") : ""; }

  /** An element with attributes and children (text or elements); no HTML parsing of data. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v == null || v === false) continue;
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v === true ? "" : v);
    }
    for (const child of children.flat()) {
      if (child == null) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function domain(thing) { return (thing.properties && thing.properties.domain) || "other"; }
  function domainLabel(key) { return DOMAINS[key] || key; }
  function simulated(entity) { return !!(entity && entity.properties && entity.properties.simulated); }
  function color(key) { return getComputedStyle(document.documentElement).getPropertyValue(`--${key}`).trim() || "#6b7280"; }

  /** Run `task` now and every `ms` while the page is visible. */
  function every(ms, task) {
    let timer = null;
    const tick = async () => {
      try { await task(); } catch (e) { console.error(e); }
      timer = setTimeout(tick, ms);
    };
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) { clearTimeout(timer); timer = null; } else if (timer === null) tick();
    });
    tick();
  }

  return { api, all, timeEnd, time, ago, value, symbol, el, domain, domainLabel, simulated, color, every, ZONE };
})();
