// Swagger UI on the OpenAPI document of this server (GET api, beside api.html); nothing from other hosts.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "api",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
