// The owner's review page: live updates (server-sent events) and decisions without a reload.
// The token is in the page's own address: every URL here is relative to it.
"use strict";

(function () {
  const state = document.getElementById("state");
  const live = document.getElementById("live");
  const notice = document.getElementById("notice");
  let inFlight = false;
  let again = false;
  let closed = false; // the owner's session closed: its server goes away next

  function say(text, ok) {
    notice.textContent = text;
    notice.className = ok ? "ok" : "error";
  }

  // Replace only the sections that changed: a button the owner is about to press stays put
  // while the audit log below it grows.
  function update(html) {
    const fresh = document.createElement("template");
    fresh.innerHTML = html;
    const sections = Array.from(fresh.content.children);
    if (sections.length !== state.children.length) {
      state.replaceChildren(fresh.content);
      return;
    }
    sections.forEach(function (section, index) {
      const old = state.children[index];
      if (!old.isEqualNode(section)) {
        old.replaceWith(section);
      }
    });
  }

  // The tab's title counts the requests waiting, as the page's own title does.
  function retitle() {
    const count = document.querySelector("#pending .count");
    const waiting = count ? Number(count.textContent) : 0;
    document.title = waiting ? "(" + waiting + ") duet · review" : "duet · review";
  }

  // Read the state again; changes that arrive meanwhile are covered by one more read.
  async function refresh() {
    if (inFlight) {
      again = true;
      return;
    }
    inFlight = true;
    try {
      const response = await fetch("state", { cache: "no-store" });
      if (response.ok) {
        update(await response.text());
        retitle();
      }
    } catch (error) {
      if (!closed) {
        live.textContent = "the owner's process does not answer";
        live.className = "live off";
      }
    } finally {
      inFlight = false;
      if (again) {
        again = false;
        setTimeout(refresh, 200); // a burst of changes is read at most five times a second
      }
    }
  }

  const events = new EventSource("events");
  events.addEventListener("open", function () {
    live.textContent = "live";
    live.className = "live on";
  });
  events.addEventListener("changed", refresh);
  events.addEventListener("closed", function () {
    closed = true;
    events.close();
    live.textContent = "the owner's session closed";
    live.className = "live off";
    refresh();
  });
  events.addEventListener("error", function () {
    if (closed) {
      return;
    }
    live.textContent = "reconnecting…";
    live.className = "live off";
  });

  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!form.classList || !form.classList.contains("decision")) {
      return;
    }
    event.preventDefault();
    for (const button of form.parentElement.querySelectorAll("button")) {
      button.disabled = true;
    }
    try {
      const response = await fetch(form.getAttribute("action"), {
        method: "POST",
        headers: { "X-Duet-Review": "1" },
        cache: "no-store",
      });
      const answer = await response.json();
      say(answer.message, answer.ok);
    } catch (error) {
      say("the decision could not be sent: " + error, false);
    }
    refresh();
  });
})();
