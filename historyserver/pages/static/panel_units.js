// Grafana's value formats for the units Ray 2.60's dashboards use (a panel's `unit` / y-axis `format`), written
// from Grafana's documented behaviour: `short` scales by 1000 (K, Mil, Bil), `bytes` by 1024 (KiB, MiB), `Bps` by
// 1000 (kB/s, MB/s), `s` and `ms` step up to min, hour, day, `percent` appends %, `percentunit` is a ratio; a unit
// Grafana does not know (Ray's "tasks", "GPUs", "%") is a suffix after the number, as Grafana shows it.
(function () {
  "use strict";

  // Grafana's automatic decimals: enough to show two significant digits of small values, none for large ones.
  function decimalsFor(v) {
    const a = Math.abs(v);
    if (a === 0 || !Number.isFinite(a)) return 0;
    if (a >= 100) return 0;
    if (a >= 10) return 1;
    return Math.min(6, Math.max(0, 1 - Math.floor(Math.log10(a))));
  }

  function fixed(v, decimals) {
    const d = decimals == null ? decimalsFor(v) : decimals;
    const text = v.toFixed(d);
    return decimals == null && text.includes(".") ? text.replace(/\.?0+$/, "") : text;
  }

  function scaled(factor, suffixes) {
    return (v, decimals) => {
      let i = 0;
      let x = v;
      while (Math.abs(x) >= factor && i < suffixes.length - 1) { x /= factor; i++; }
      return fixed(x, decimals) + suffixes[i];
    };
  }

  function timeUnits(v, decimals, baseMs) {
    const ms = v * baseMs;
    const a = Math.abs(ms);
    const steps = [[1, " ms"], [1000, " s"], [60000, " min"], [3600000, " hour"], [86400000, " day"],
                   [604800000, " week"], [31536000000, " year"]];
    if (a === 0) return fixed(0, decimals) + (baseMs === 1000 ? " s" : " ms");
    let k = 0;
    while (k < steps.length - 1 && a >= steps[k + 1][0]) k++;
    if (a < 1 && a > 0) return fixed(ms * 1000, decimals) + " µs";
    return fixed(ms / steps[k][0], decimals) + steps[k][1];
  }

  const SI = ["", " K", " Mil", " Bil", " Tri", " Quadr", " Quint", " Sext", " Sept"];
  const FORMATS = {
    short: scaled(1000, SI),
    none: (v, d) => fixed(v, d),
    bytes: scaled(1024, [" B", " KiB", " MiB", " GiB", " TiB", " PiB", " EiB"]),
    decbytes: scaled(1000, [" B", " kB", " MB", " GB", " TB", " PB", " EB"]),
    Bps: scaled(1000, [" B/s", " kB/s", " MB/s", " GB/s", " TB/s", " PB/s"]),
    binBps: scaled(1024, [" B/s", " KiB/s", " MiB/s", " GiB/s", " TiB/s"]),
    percent: (v, d) => fixed(v, d) + "%",
    percentunit: (v, d) => fixed(v * 100, d) + "%",
    s: (v, d) => timeUnits(v, d, 1000),
    ms: (v, d) => timeUnits(v, d, 1),
    celsius: (v, d) => fixed(v, d) + "°C",
    mwatt: (v, d) => fixed(v, d) + " mW",
    watt: (v, d) => fixed(v, d) + " W",
    ops: scaled(1000, SI.map((s) => s + " ops/s")),
    reqps: scaled(1000, SI.map((s) => s + " req/s")),
  };

  function format(unit, v, decimals) {
    if (v == null || Number.isNaN(v)) return "–";
    if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
    const fn = FORMATS[unit];
    if (fn) return fn(v, decimals);
    return fixed(v, decimals) + (unit ? " " + unit : "");
  }

  // Tick steps for bytes at powers of two, so that an axis reads 2 GiB, 4 GiB rather than 1.86 GiB, 3.73 GiB.
  const BYTE_INCRS = [];
  for (let k = 0; k < 7; k++) for (let m = 1; m < 1024; m *= 2) BYTE_INCRS.push(m * 1024 ** k);

  window.RayhistoryUnits = { format, byteIncrs: (unit) => (unit === "bytes" ? BYTE_INCRS : undefined) };
})();
