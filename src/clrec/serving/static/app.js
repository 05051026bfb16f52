// The clrec browser page: plain JavaScript over the service's own API, no build step, no
// third-party code. Every data request carries the API key typed in above (kept in this tab's
// sessionStorage only); every answer is rendered with textContent, never as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "clrec.apiKey";
  const MAX_K = 100; // clrec serve's default --max-k; a larger k answers 422, shown as an error
  const HISTORY_LIMIT = 100;
  const USER_LIMIT = 24;
  const base = new URL("..", window.location.href); // the service root (the page is at /ui/)
  const $ = (id) => document.getElementById(id);
  const STATUS_TEXT = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 413: "Content Too Large", 422: "Unprocessable Content",
    429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable",
  };

  const page = {
    user: null, // the chosen user's id
    ready: null, // /readyz
    lastAdded: null, // the id of the item added last (highlighted wherever it shows)
    showAtLeast: 0, // extend the recommendations to this many so the added item is in view
    descriptionField: null,
    descriptionIsTags: false,
  };

  // ---------------------------------------------------------------- API and errors

  class ApiError extends Error {
    constructor(method, path, status, detail) {
      super(`${status} ${detail}`);
      this.method = method;
      this.path = path;
      this.status = status;
      this.detail = detail;
    }
  }

  function apiKey() {
    return window.sessionStorage.getItem(KEY_STORAGE) || "";
  }

  function describe(data) {
    if (data === null || data === undefined) return "";
    if (typeof data === "string") return data;
    const detail = data.detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    }
    if (typeof detail === "string") return detail;
    return JSON.stringify(data);
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers["X-API-Key"] = key;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(new URL(path, base), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(method, path, 0, `the service did not answer (${error.message})`);
    }
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      // not JSON: keep the text as the detail
    }
    if (!response.ok) {
      let detail = describe(data) || response.statusText;
      const retry = response.headers.get("Retry-After");
      if (retry) detail += ` (retry after ${retry} s)`;
      if (response.status === 401 && !key) detail += " — enter an API key above";
      throw new ApiError(method, path, response.status, detail);
    }
    return data;
  }

  function showError(error) {
    const known = error instanceof ApiError;
    const status = known ? error.status : 0;
    $("error-status").textContent = status
      ? `${status} ${STATUS_TEXT[status] || ""}`.trim()
      : known ? "No answer" : "Error";
    $("error-request").textContent = known ? `${error.method} /${error.path}` : "";
    $("error-detail").textContent = known ? error.detail : String(error && error.message || error);
    $("error").dataset.status = String(status);
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
  }

  // Run an action; an error goes to the banner and to the panel's note.
  async function guarded(action, note) {
    try {
      return await action();
    } catch (error) {
      showError(error);
      if (note) note.textContent = error instanceof ApiError && error.status
        ? `failed: ${error.status} ${STATUS_TEXT[error.status] || ""}`.trim()
        : "failed";
      return undefined;
    }
  }

  const seg = (value) => encodeURIComponent(value);

  // ---------------------------------------------------------------- rendering

  function itemRow(item, rank, extra, explainable) {
    const li = document.createElement("li");
    li.dataset.id = item.id;
    if (item.id === page.lastAdded) li.classList.add("new");
    const number = document.createElement("span");
    number.className = "rank";
    number.textContent = String(rank);
    li.append(number);
    if (item.image) {
      const img = document.createElement("img");
      img.src = item.image;
      img.alt = "";
      img.loading = "lazy";
      img.referrerPolicy = "no-referrer";
      li.classList.add("with-image");
      li.append(img);
    }
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = item.title || item.id;
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.textContent = [item.id, extra].filter(Boolean).join(" · ");
    const similar = document.createElement("button");
    similar.type = "button";
    similar.className = "action";
    similar.textContent = "similar";
    similar.title = "the items most similar to this one";
    similar.addEventListener("click", () => loadSimilar(item));
    const actions = document.createElement("span");
    actions.className = "actions";
    actions.append(similar);
    if (explainable) {
      const why = document.createElement("button");
      why.type = "button";
      why.className = "why-button";
      why.textContent = "why?";
      why.title = "which of the user's items this recommendation comes from";
      why.setAttribute("aria-expanded", "false");
      why.addEventListener("click", () => toggleExplanation(li, item, why));
      actions.append(why);
    }
    li.append(title, meta, actions);
    return li;
  }

  // "Because you liked …": the model's own split of the score (GET
  // /v1/users/{id}/explain/{item}): each history item's share of the score, and the rank the
  // item would have had without it.
  async function toggleExplanation(li, item, button) {
    const open = li.querySelector(".why");
    if (open) {
      open.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    const user = page.user;
    const panel = document.createElement("div");
    panel.className = "why";
    panel.textContent = "explaining…";
    li.append(panel);
    button.setAttribute("aria-expanded", "true");
    const found = await guarded(
      () => api("GET", `v1/users/${seg(user)}/explain/${seg(item.id)}?k=5&counterfactuals=3`),
      panel,
    );
    if (!found || user !== page.user) return;
    panel.replaceChildren(...explanationNodes(found));
  }

  function percent(part, whole) {
    return whole !== 0 ? `${((100 * part) / Math.abs(whole)).toFixed(0)} %` : "–";
  }

  function explanationNodes(found) {
    const nodes = [];
    const head = document.createElement("p");
    head.className = "why-head";
    const liked = found.contributions.filter((c) => c.contribution > 0);
    head.textContent = liked.length
      ? `Because you liked … (rank ${found.rank}, score ${found.score.toFixed(4)})`
      : `No history item raises it (rank ${found.rank}, score ${found.score.toFixed(4)})`;
    nodes.push(head);
    const list = document.createElement("ul");
    list.className = "why-list";
    for (const c of found.contributions) {
      const row = document.createElement("li");
      row.dataset.id = c.id;
      const name = document.createElement("span");
      name.className = "why-title";
      name.textContent = c.title || c.id;
      const share = document.createElement("span");
      share.className = "why-share";
      share.textContent = ` — ${percent(c.contribution, found.score)} of the score`;
      share.title = `contribution ${c.contribution.toFixed(4)}`;
      row.append(name, share);
      if (c.rank_without !== null && c.rank_without !== undefined) {
        const without = document.createElement("span");
        without.className = "why-without";
        without.dataset.rank = String(c.rank_without);
        without.textContent = ` · without it: rank ${found.rank} → ${c.rank_without}`;
        row.append(without);
      }
      list.append(row);
    }
    nodes.push(list);
    const rest = document.createElement("p");
    rest.className = "why-rest muted";
    const own = `your own taste vector ${percent(found.user_part, found.score)}`;
    const parts = Object.entries(found.item_parts || {})
      .map(([name, value]) => `${name} ${percent(value, found.score)}`)
      .join(", ");
    rest.textContent = `${own}; by the item's side: ${parts}`;
    nodes.push(rest);
    return nodes;
  }

  function fill(list, rows) {
    list.replaceChildren(...rows);
  }

  // ---------------------------------------------------------------- service status

  async function loadReadiness() {
    let ready;
    try {
      const response = await fetch(new URL("readyz", base), { cache: "no-store" });
      ready = await response.json();
    } catch (error) {
      $("service-status").textContent = "the service does not answer; retrying…";
      window.setTimeout(loadReadiness, 2000);
      return;
    }
    if (ready.status === "starting") {
      $("service-status").textContent = "the service is starting…";
      window.setTimeout(loadReadiness, 2000);
      return;
    }
    page.ready = ready;
    const parts = [ready.model, `${ready.items} items`, `${ready.users} users`];
    if (ready.index) parts.push(`${ready.index.kind} index`);
    parts.push(ready.status);
    $("service-status").textContent = parts.filter(Boolean).join(" · ");
    $("rerank").disabled = !ready.ranker;
    $("rerank-note").textContent = ready.ranker ? "" : "(this artifact has no ranking stage)";
    if (!ready.ranker) $("rerank").checked = false;
    buildItemForm(ready.item_fields || {});
    checkReport();
  }

  async function checkReport() {
    let found = false;
    try {
      const response = await fetch(new URL("report", base), { method: "HEAD", cache: "no-store" });
      found = response.ok;
    } catch (_) {
      found = false;
    }
    $("report-link").hidden = !found;
    $("report-missing").hidden = found;
  }

  // ---------------------------------------------------------------- users

  let searchTimer = 0;

  async function searchUsers(prefix) {
    if (!apiKey()) {
      $("user-count").textContent = "enter an API key (read scope) to list users";
      return;
    }
    const found = await guarded(
      () => api("GET", `v1/users?prefix=${seg(prefix)}&limit=${USER_LIMIT}`),
      $("user-count"),
    );
    if (!found) return;
    $("user-count").textContent = found.total === 0
      ? "no user matches"
      : `${found.total} user${found.total === 1 ? "" : "s"} match` +
        (found.total > found.users.length ? ` (first ${found.users.length})` : "");
    const chips = found.users.map((id) => {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.textContent = id;
      chip.dataset.user = id;
      if (id === page.user) chip.classList.add("chosen");
      chip.addEventListener("click", () => selectUser(id));
      return chip;
    });
    $("user-matches").replaceChildren(...chips);
  }

  async function selectUser(id) {
    if (!id) return;
    page.user = id;
    page.showAtLeast = 0;
    clearError();
    $("user-search").value = id;
    for (const chip of $("user-matches").querySelectorAll("button")) {
      chip.classList.toggle("chosen", chip.dataset.user === id);
    }
    $("history-user").textContent = id;
    $("recs-user").textContent = id;
    $("item-submit").textContent = `Add and place for user ${id}`;
    await Promise.all([loadHistory(), loadRecommendations()]);
  }

  async function loadHistory() {
    const user = page.user;
    $("history-count").textContent = "loading…";
    const found = await guarded(
      () => api("GET", `v1/users/${seg(user)}/history?limit=${HISTORY_LIMIT}`),
      $("history-count"),
    );
    if (user !== page.user) return;
    if (!found) {
      fill($("history-list"), []);
      return;
    }
    $("history-count").textContent = found.total > found.items.length
      ? `${found.total} items (the first ${found.items.length})`
      : `${found.total} item${found.total === 1 ? "" : "s"}`;
    const source = { trained: "in the training data", events: "recorded event" };
    fill($("history-list"), found.items.map((item, i) => itemRow(item, i + 1, source[item.source])));
  }

  function requestedK() {
    const k = Number.parseInt($("k").value, 10);
    return Number.isFinite(k) && k > 0 ? k : 10;
  }

  async function loadRecommendations() {
    const user = page.user;
    if (!user) return;
    const rerank = $("rerank").checked;
    const k = Math.max(requestedK(), page.showAtLeast);
    $("recs-note").textContent = rerank ? "re-ranking…" : "loading…";
    const query = `k=${k}` + (rerank ? "&rerank=true" : "");
    const found = await guarded(
      () => api("GET", `v1/users/${seg(user)}/recommendations?${query}`),
      $("recs-note"),
    );
    if (user !== page.user) return;
    if (!found) {
      fill($("rec-list"), []);
      return;
    }
    const label = rerank ? "ranking score" : "score";
    let note = `top ${found.items.length}` + (rerank ? ", re-ranked by the language model" : "");
    if (k > requestedK()) note += ` (extended to show ${page.lastAdded})`;
    $("recs-note").textContent = note;
    fill(
      $("rec-list"),
      found.items.map((item, i) =>
        itemRow(item, i + 1, `${label} ${item.score.toFixed(4)}`, !rerank),
      ),
    );
    const added = $("rec-list").querySelector("li.new");
    if (added) added.scrollIntoView({ block: "nearest" });
  }

  // ---------------------------------------------------------------- similar items

  async function loadSimilar(item) {
    $("similar-note").textContent = "loading…";
    const found = await guarded(
      () => api("GET", `v1/items/${seg(item.id)}/similar?k=${requestedK()}`),
      $("similar-note"),
    );
    if (!found) {
      fill($("similar-list"), []);
      return;
    }
    $("similar-note").textContent = `most similar to “${item.title || item.id}” (${item.id})`;
    fill(
      $("similar-list"),
      found.items.map((other, i) => itemRow(other, i + 1, `similarity ${other.score.toFixed(4)}`)),
    );
  }

  // ---------------------------------------------------------------- new items

  // The form follows the catalogue's own fields (readyz.item_fields): a title, a description
  // (the first text field besides the title; else the free tags, entered as words), and
  // the other fields folded away. Image fields are left out: the service would read them.
  function buildItemForm(fields) {
    const holder = $("item-fields");
    holder.replaceChildren();
    const names = Object.keys(fields).filter((name) => fields[name] !== "image");
    if (names.length === 0) {
      holder.textContent = "this model reads no item content: new items cannot be added";
      $("item-submit").disabled = true;
      return;
    }
    const titleField = names.includes("title")
      ? "title"
      : names.find((name) => fields[name] === "text") || names[0];
    const description = names.find((n) => n !== titleField && fields[n] === "text")
      || names.find((n) => n !== titleField && n !== "genres" && fields[n] === "tags")
      || null;
    page.descriptionField = description;
    page.descriptionIsTags = description !== null && fields[description] === "tags";

    holder.append(fieldInput(titleField, "Title", "input", true, "e.g. Heat (1995)"));
    if (description) {
      const hint = page.descriptionIsTags
        ? `Description (sent as ${description}: words or phrases, separated by commas)`
        : "Description";
      holder.append(fieldInput(description, hint, "textarea", false, ""));
    }
    const rest = names.filter((n) => n !== titleField && n !== description);
    if (rest.length) {
      const more = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `more fields (${rest.join(", ")})`;
      more.append(summary);
      for (const name of rest) {
        const hint = fields[name] === "tags" ? `${name} (separate values with |)` : name;
        more.append(fieldInput(name, hint, "input", false, ""));
      }
      holder.append(more);
    }
    if (!$("item-id").value) $("item-id").value = freshItemId();
  }

  function fieldInput(name, labelText, tag, required, placeholder) {
    const label = document.createElement("label");
    label.textContent = labelText;
    const input = document.createElement(tag);
    input.dataset.field = name;
    input.name = name;
    input.id = `field-${name}`;
    input.required = required;
    input.placeholder = placeholder;
    label.append(input);
    return label;
  }

  function freshItemId() {
    return `new-${Date.now().toString(36)}`;
  }

  function itemBody() {
    const body = {};
    for (const input of $("item-fields").querySelectorAll("[data-field]")) {
      let value = input.value.trim();
      if (!value) continue;
      if (input.dataset.field === page.descriptionField && page.descriptionIsTags) {
        value = value.split(/[,;\n|]+/).map((w) => w.trim()).filter(Boolean).join("|");
      }
      body[input.dataset.field] = value;
    }
    return body;
  }

  async function addItem(event) {
    event.preventDefault();
    clearError();
    const id = $("item-id").value.trim();
    if (!id) return;
    const user = page.user;
    const path = `v1/items/${seg(id)}` + (user ? `?for_user=${seg(user)}` : "");
    $("placement").classList.remove("landed");
    $("placement").textContent = "embedding…";
    $("item-submit").disabled = true;
    try {
      const written = await guarded(() => api("PUT", path, itemBody()), $("placement"));
      if (!written) return;
      page.lastAdded = written.id;
      const name = `“${written.title || written.id}” (${written.id})`;
      const verb = written.created ? "added" : "updated";
      const placed = written.placement;
      if (!placed) {
        $("placement").textContent = `${name} ${verb}; choose a user to see where it lands`;
        return;
      }
      $("placement").dataset.rank = String(placed.rank);
      $("placement").textContent =
        `${name} ${verb}: for user ${placed.user} it lands at rank ${placed.rank} of ` +
        `${placed.candidates} (score ${placed.score.toFixed(4)})` +
        (placed.seen ? "; the user has already seen it" : "") +
        (placed.rank > MAX_K ? `; beyond the top ${MAX_K}, so not in the list` : "");
      $("placement").classList.add("landed");
      $("item-id").value = freshItemId();
      if (user === page.user) {
        page.showAtLeast = placed.rank <= MAX_K ? placed.rank : 0;
        await loadRecommendations();
      }
    } finally {
      $("item-submit").disabled = false;
    }
  }

  // ---------------------------------------------------------------- wiring

  function showKeyState() {
    $("key-state").textContent = apiKey() ? "key set for this tab" : "no key";
  }

  function start() {
    $("api-key").value = apiKey();
    showKeyState();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (key) window.sessionStorage.setItem(KEY_STORAGE, key);
      else window.sessionStorage.removeItem(KEY_STORAGE);
      showKeyState();
      clearError();
      searchUsers($("user-search").value.trim());
      if (page.user) selectUser(page.user);
    });
    $("forget-key").addEventListener("click", () => {
      window.sessionStorage.removeItem(KEY_STORAGE);
      $("api-key").value = "";
      showKeyState();
    });
    $("error-close").addEventListener("click", clearError);
    $("user-search").addEventListener("input", () => {
      window.clearTimeout(searchTimer);
      searchTimer = window.setTimeout(() => searchUsers($("user-search").value.trim()), 250);
    });
    $("user-form").addEventListener("submit", (event) => {
      event.preventDefault();
      selectUser($("user-search").value.trim());
    });
    $("k").addEventListener("change", () => {
      page.showAtLeast = 0;
      loadRecommendations();
    });
    $("rerank").addEventListener("change", loadRecommendations);
    $("item-form").addEventListener("submit", addItem);
    loadReadiness();
    searchUsers("");
  }

  start();
})();
