/* geotl monitor report: the map of open alerts over the latest pass's quicklook.
   Data come from data.js (window.GEOTL_REPORT); Leaflet is vendored beside the page. */
(function () {
  "use strict";
  var data = window.GEOTL_REPORT;
  var colours = { open: "#e41a1c", delivered: "#ff7f00", failed: "#984ea3" };
  var map = L.map("map", { zoomSnap: 0.25, attributionControl: false });
  var bounds = null;
  if (data.quicklook) {
    L.imageOverlay(data.quicklook.href, data.quicklook.bounds, { opacity: 1 }).addTo(map);
    bounds = L.latLngBounds(data.quicklook.bounds);
  }
  var byId = {};
  var layer = L.geoJSON(data.alerts, {
    style: function (feature) {
      return {
        color: colours[feature.properties.status] || "#e41a1c",
        weight: 2,
        fillOpacity: 0.2,
        className: "geotl-alert geotl-alert-" + feature.properties.status
      };
    },
    onEachFeature: function (feature, path) {
      var p = feature.properties;
      var box = document.createElement("div");
      var title = document.createElement("strong");
      title.textContent = p.id + " (" + p.status + ")";
      box.appendChild(title);
      [
        "rule: " + p.rule,
        p["class"] + ", " + p.change + ", " + p.area_m2 + " m\u00b2",
        "first " + p.first_scene + ", last " + p.last_scene
      ].forEach(function (line) {
        var div = document.createElement("div");
        div.textContent = line;
        box.appendChild(div);
      });
      path.bindPopup(box);
      byId[p.id] = path;
    }
  }).addTo(map);
  if (layer.getLayers().length) {
    bounds = bounds ? bounds.extend(layer.getBounds()) : layer.getBounds();
  }
  if (bounds) {
    map.fitBounds(bounds, { padding: [10, 10] });
  } else {
    map.setView([0, 0], 2);
  }
  L.control.scale({ imperial: false }).addTo(map);
  document.getElementById("map").setAttribute("data-alerts", String(layer.getLayers().length));
  Array.prototype.forEach.call(document.querySelectorAll("a.zoom"), function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var path = byId[link.getAttribute("data-id")];
      if (path) {
        map.fitBounds(path.getBounds(), { maxZoom: 17 });
        path.openPopup();
        document.getElementById("map").scrollIntoView();
      }
    });
  });
  document.body.setAttribute("data-ready", "1");
})();
