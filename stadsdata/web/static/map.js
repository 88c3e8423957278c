/* The map: Things at their Locations over the bundled neighbourhood outlines (no tile server needed). */
"use strict";
(() => {
  const body = document.body;
  const TILE_KEY = "stadsdata.tileUrl";
  const map = L.map("map", { keyboard: true, zoomSnap: 0.5 }).setView([52.2215, 6.8937], 13);
  const status = document.getElementById("status");
  let tiles = null;

  function useTiles(url) {
    if (tiles) { map.removeLayer(tiles); tiles = null; }
    if (url) {
      tiles = L.tileLayer(url, { maxZoom: 19, attribution: body.dataset.tileAttribution || "map tiles: " + new URL(url.replace(/[{}]/g, "")).host });
      tiles.addTo(map).bringToBack();
    }
  }
  const tileInput = document.getElementById("tile-url");
  const chosen = localStorage.getItem(TILE_KEY);
  const tileUrl = chosen !== null ? chosen : body.dataset.tileUrl || "";
  tileInput.value = tileUrl;
  useTiles(tileUrl);
  document.getElementById("tile-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TILE_KEY, tileInput.value.trim());
    useTiles(tileInput.value.trim());
  });

  SD.api("/dashboard/neighbourhoods.geojson").then((doc) => {
    const layer = L.geoJSON(doc, {
      style: { color: "#7b858e", weight: 1, fillColor: "#dfe6ea", fillOpacity: 0.45 },
      onEachFeature: (f, l) => l.bindTooltip(f.properties.buurtnaam, { sticky: true, className: "buurt-tip" }),
    }).addTo(map);
    layer.bringToBack();
    map.attributionControl.addAttribution("Neighbourhoods: CBS, Kadaster (CC BY 4.0)");
  }).catch((e) => { status.textContent = "The neighbourhood outlines could not be loaded: " + e.message; });

  const markers = new Map();
  const filter = document.getElementById("domain-filter");
  const list = document.getElementById("thing-list");
  let things = [];

  function latestOf(ds) {
    const obs = ds.Observations && ds.Observations[0];
    return obs ? { result: obs.result, time: SD.timeEnd(obs.phenomenonTime) } : null;
  }

  function popup(thing) {
    const items = (thing.Datastreams || []).map((ds) => {
      const last = latestOf(ds);
      return SD.el("li", {},
        SD.el("a", { href: `/datastreams/${ds["@iot.id"]}` }, ds.name.replace(`${thing.name}: `, "")), ": ",
        SD.el("strong", { "data-live": ds["@iot.id"] }, last ? SD.value(last.result, ds.unitOfMeasurement) : "no readings"),
        last ? SD.el("span", { class: "muted" }, ` (${SD.time(last.time)})`) : null);
    });
    return SD.el("div", { class: "popup" },
      SD.el("h3", {}, thing.name),
      SD.simulated(thing) ? SD.el("span", { class: "tag sim" }, "simulated") : null,
      SD.el("p", { class: "muted" }, thing.description || ""),
      SD.el("ul", {}, items));
  }

  function position(thing) {
    for (const loc of thing.Locations || []) {
      const g = loc.location && (loc.location.type === "Feature" ? loc.location.geometry : loc.location);
      if (g && g.type === "Point") return [g.coordinates[1], g.coordinates[0]];
      if (g && g.coordinates) {
        try { const c = L.geoJSON(g).getBounds().getCenter(); return [c.lat, c.lng]; } catch (e) { /* skip */ }
      }
    }
    return null;
  }

  function render() {
    const wanted = filter.value;
    list.replaceChildren();
    let shown = 0;
    for (const thing of things) {
      const id = thing["@iot.id"];
      const where = position(thing);
      const key = SD.domain(thing);
      const visible = !wanted || key === wanted;
      let marker = markers.get(id);
      if (where && !marker) {
        const icon = L.divIcon({ className: "marker", html: `<span class="marker-dot" style="background:${SD.color(key)}"></span>`, iconSize: [18, 18], iconAnchor: [9, 9] });
        marker = L.marker(where, { icon, title: thing.name, alt: thing.name, keyboard: true, riseOnHover: true });
        marker.bindPopup(() => popup(markers.get(id).thing), { maxWidth: 320 });
        markers.set(id, marker);
      }
      if (marker) {
        marker.thing = thing;
        if (marker.isPopupOpen()) marker.setPopupContent(popup(thing));
        if (visible && !map.hasLayer(marker)) marker.addTo(map);
        if (!visible && map.hasLayer(marker)) map.removeLayer(marker);
      }
      if (!visible) continue;
      shown++;
      const button = SD.el("button", { type: "button", class: "linklike", "aria-label": `Show ${thing.name} on the map` }, "map");
      button.addEventListener("click", () => {
        if (!marker) return;
        map.setView(marker.getLatLng(), Math.max(map.getZoom(), 15));
        marker.openPopup();
        const first = document.querySelector(".leaflet-popup-content a");
        if (first) first.focus();
      });
      const first = (thing.Datastreams || [])[0];
      list.append(SD.el("li", {},
        SD.el("span", { class: "dot", style: `background:${SD.color(key)}`, "aria-hidden": "true" }),
        first ? SD.el("a", { href: `/datastreams/${first["@iot.id"]}` }, thing.name) : thing.name, " ",
        where ? button : SD.el("span", { class: "muted" }, "(no location)")));
    }
    document.getElementById("thing-count").textContent = `(${shown})`;
  }

  filter.addEventListener("change", render);
  let fitted = false;
  const query = "/v1.1/Things?$top=1000&$select=id,name,description,properties"
    + "&$expand=Locations($select=location),Datastreams($select=id,name,unitOfMeasurement;$orderby=id"
    + ";$expand=Observations($select=result,phenomenonTime;$orderby=phenomenonTime desc;$top=1))";
  SD.every(15000, async () => {
    things = await SD.all(query);
    const domains = [...new Set(things.map(SD.domain))].sort();
    if (filter.options.length - 1 !== domains.length) {
      const current = filter.value;
      filter.replaceChildren(SD.el("option", { value: "" }, "all domains"), ...domains.map((d) => SD.el("option", { value: d }, SD.domainLabel(d))));
      filter.value = current;
      document.getElementById("legend").replaceChildren(...domains.map((d) => SD.el("li", {},
        SD.el("span", { class: "dot", style: `background:${SD.color(d)}`, "aria-hidden": "true" }), SD.domainLabel(d))));
    }
    render();
    if (!fitted && markers.size) {
      map.fitBounds(L.featureGroup([...markers.values()]).getBounds().pad(0.15));
      fitted = true;
    }
    status.textContent = `${things.length} Things, updated ${SD.time(Date.now())}`;
  });
})();
