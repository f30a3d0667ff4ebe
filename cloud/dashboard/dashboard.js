// tokencast dashboard: the only script. The pages work without it; it adds two conveniences.
"use strict";

// 1. the device filter applies on change
document.querySelectorAll("select[data-autosubmit]").forEach((sel) => {
  sel.addEventListener("change", () => sel.form.submit());
});

// 2. on the newest page, say when newer frames have been stored (polls the JSON API)
const fresh = document.getElementById("fresh");
if (fresh && fresh.dataset.newest) {
  const check = async () => {
    try {
      const r = await fetch(fresh.dataset.api, { cache: "no-store" });
      if (!r.ok) return;
      const body = await r.json();
      const f = body.frames[0];
      if (f && `${f.received_at}:${f.device_id}:${f.counter}` !== fresh.dataset.newest) fresh.hidden = false;
    } catch (e) { /* offline: try again next tick */ }
  };
  setInterval(check, 10000);
}
