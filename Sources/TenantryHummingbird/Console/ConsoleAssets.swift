import Hummingbird

/// The console's script and style, served by Tenantry itself (`/console/assets/…`): nothing comes
/// from another host, and pages hold no inline code (the Content-Security-Policy forbids it).
enum ConsoleAssets {
    static func response(_ text: String, type: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "private, max-age=300"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    /// Live values over server-sent events, the tenant filter, "select all".
    static let script = #"""
    (function () {
      "use strict";
      var filter = document.getElementById("filter");
      if (filter) {
        var rows = Array.prototype.slice.call(document.querySelectorAll("#tenants tbody tr"));
        var count = document.getElementById("filter-count");
        filter.addEventListener("input", function () {
          var query = filter.value.trim().toLowerCase(), shown = 0;
          rows.forEach(function (row) {
            var match = !query || row.textContent.toLowerCase().indexOf(query) >= 0;
            row.hidden = !match;
            if (match) { shown += 1; }
          });
          if (count) { count.textContent = query ? shown + " of " + rows.length + " shown" : ""; }
        });
      }
      var all = document.getElementById("select-all");
      if (all) {
        all.addEventListener("change", function () {
          document.querySelectorAll("#tenants tbody tr:not([hidden]) input[name=tenants]").forEach(function (box) { box.checked = all.checked; });
        });
      }
      var url = document.body.getAttribute("data-events");
      var status = document.getElementById("live-status");
      if (!url || !window.EventSource) { return; }
      var index = {};
      document.querySelectorAll("[data-live],[data-live-value]").forEach(function (element) {
        var key = element.getAttribute("data-live") || element.getAttribute("data-live-value");
        (index[key] = index[key] || []).push(element);
      });
      var source = new EventSource(url);
      source.onopen = function () { if (status) { status.textContent = "live"; status.className = "live-status on"; } };
      source.onerror = function () { if (status) { status.textContent = "reconnecting"; status.className = "live-status off"; } };
      source.addEventListener("expired", function () { source.close(); window.location.href = "/console/login"; });
      source.onmessage = function (event) {
        var values = JSON.parse(event.data);
        Object.keys(values).forEach(function (key) {
          var value = values[key];
          (index[key] || []).forEach(function (element) {
            if (element.hasAttribute("data-live-value")) { element.value = value; return; }
            if (element.textContent === value) { return; }
            element.textContent = value;
            var badge = element.getAttribute("data-badge");
            if (badge) { element.className = "badge " + badge + value.split(" ")[0]; }
            element.classList.add("changed");
            window.setTimeout(function () { element.classList.remove("changed"); }, 900);
            if (element.id === "job-state" && (value === "succeeded" || value === "failed")) {
              source.close();
              window.setTimeout(function () { window.location.reload(); }, 300);
            }
          });
        });
      };
    })();
    """#

    static let style = #"""
    :root { --ink: #1d2433; --muted: #5b6474; --line: #dde2ea; --bg: #f6f7f9; --accent: #2457c5; --ok: #1a7f4b; --bad: #b42318; --warn: #b54708; }
    * { box-sizing: border-box; }
    body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink); background: var(--bg); }
    header { background: #111827; color: #fff; }
    nav { display: flex; align-items: center; gap: 18px; padding: 10px 24px; }
    nav a { color: #cfd6e4; text-decoration: none; }
    nav a:hover { color: #fff; }
    nav .brand { color: #fff; font-weight: 700; letter-spacing: .02em; }
    nav .spacer { flex: 1; }
    nav .operator { color: #cfd6e4; }
    main { padding: 18px 24px 48px; max-width: 1400px; }
    h1 { font-size: 22px; margin: 6px 0 14px; }
    h1 small { color: var(--muted); font-weight: 400; font-size: 15px; }
    h2 { font-size: 16px; margin: 22px 0 8px; }
    .cards { display: flex; flex-wrap: wrap; gap: 10px; margin-bottom: 10px; }
    .cards .legend { width: 92px; align-self: center; color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
    .card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 14px; min-width: 110px; display: flex; flex-direction: column; }
    .card .count { font-size: 20px; font-weight: 650; }
    .card .name { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
    .row { display: flex; flex-wrap: wrap; gap: 28px; }
    .row > div { min-width: 260px; }
    table.data { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
    table.data th, table.data td { padding: 5px 8px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
    table.data thead th { background: #eef1f6; font-weight: 600; font-size: 12px; color: var(--muted); text-transform: uppercase; }
    td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
    td.error, .error { color: var(--bad); }
    .badge { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #e7ebf3; font-size: 12px; }
    .phase-syncing, .phase-copying, .state-running { background: #dbe7ff; }
    .phase-reads_switched, .phase-cutover, .state-queued { background: #fff1d6; }
    .phase-dedicated, .phase-retired, .state-succeeded { background: #d8f3e4; }
    .state-failed { background: #fde0dc; }
    .changed { outline: 2px solid #f5c451; transition: outline-color .8s; }
    .live-status { font-size: 12px; color: #9aa4b6; }
    .live-status.on::before { content: "● "; color: #3ecf8e; }
    .live-status.off::before { content: "● "; color: #f97066; }
    form.inline { display: inline; }
    button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid #c5cddb; background: #fff; cursor: pointer; }
    button:hover { border-color: var(--accent); }
    button.link { border: 0; background: none; color: #cfd6e4; padding: 0; }
    .actions { margin: 8px 0; display: flex; flex-wrap: wrap; gap: 6px; align-items: center; }
    input[type=search], input[type=text], input[type=password], select, input[type=number] { font: inherit; padding: 5px 8px; border: 1px solid #c5cddb; border-radius: 6px; }
    input[type=search] { width: 340px; }
    .login { max-width: 420px; margin: 60px auto; background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 24px; }
    .login label { display: block; margin: 12px 0; }
    .login input { width: 100%; margin-top: 4px; }
    .hint { color: var(--muted); font-size: 12px; }
    .crumbs { color: var(--muted); margin: 0; }
    ol.timeline { background: #fff; border: 1px solid var(--line); padding: 10px 10px 10px 34px; }
    ol.timeline li { margin: 3px 0; }
    ol.timeline time { color: var(--muted); font-variant-numeric: tabular-nums; }
    .outcome-failed .outcome, .outcome-refused .outcome { color: var(--bad); }
    .outcome-ok .outcome { color: var(--ok); }
    .detail, .actor { color: var(--muted); }
    svg.chart { width: 560px; max-width: 100%; background: #fff; border: 1px solid var(--line); }
    svg .axis { stroke: #9aa4b6; }
    svg .bar.s0 { fill: #9aa4b6; }
    svg .bar.s1 { fill: #2457c5; }
    svg .line { fill: none; stroke: #2457c5; stroke-width: 2; }
    svg text { font-size: 11px; fill: var(--muted); }
    pre { background: #fff; border: 1px solid var(--line); padding: 10px; overflow: auto; max-height: 480px; }
    progress { width: 320px; }
    """#
}
