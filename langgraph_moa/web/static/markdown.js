/* Model output as Markdown: sanitised so it cannot drive the page, and rendered
 * incrementally while it streams.
 *
 * Safety (issue 20 item 9): DOMPurify drops every form control, <style> and the style/id/
 * class attributes (model text cannot draw a fake form, a positioned overlay or clobber the
 * page's ids); links open in a new tab with rel=noopener (leaving the page would orphan
 * nothing since runs live on the server, but it would lose the user's place); external
 * images become links (the CSP would block them anyway, once per streamed frame).
 *
 * Scale (issue 23 item 11): a streamed answer is split into Markdown blocks with marked's
 * lexer; finished blocks are rendered once and never touched again (so text in them can be
 * selected while the answer streams), only the open tail is re-rendered, at most once per
 * animation frame, and the lexer only ever sees the text after the last finished block.
 *
 * Code (issue 23 item 8): every block gets a copy bar; a finished block whose fence names a
 * language highlight.js knows is highlighted once (never the streaming tail, never Mermaid,
 * which is drawn instead, and no guessing for unnamed blocks). */
"use strict";

const MD = (() => {
  const FORBID_TAGS = [
    "form", "input", "button", "textarea", "select", "option", "optgroup", "datalist",
    "fieldset", "output", "style", "link", "meta", "base", "iframe", "frame", "object",
    "embed", "dialog", "template", "slot",
  ];
  const FORBID_ATTR = [
    "style", "id", "name", "form", "formaction", "action", "autofocus", "tabindex",
    "popover", "popovertarget", "accesskey", "contenteditable",
  ];
  let hooked = false;
  let modelText = false;  // the hook rewrites model Markdown only, not Mermaid's own SVG

  function hook() {
    if (hooked || !window.DOMPurify) return;
    hooked = true;
    window.DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (!modelText || !node.getAttribute) return;
      const cls = node.getAttribute("class");
      if (cls !== null) {  // only marked's language-xxx on code: no page classes from a model
        const keep = cls.split(/\s+/).filter((c) => /^language-[\w+#.-]+$/.test(c));
        if (keep.length) node.setAttribute("class", keep.join(" "));
        else node.removeAttribute("class");
      }
      if (node.tagName === "A" && node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer");
      }
    });
  }

  function escapeHTML(text) {
    const div = document.createElement("div");
    div.textContent = text;
    return div.innerHTML;
  }

  /* Sanitised DOM for Markdown source (a fragment the caller may insert). */
  function toFragment(source, tokens) {
    let html;
    if (window.marked && window.DOMPurify) {
      hook();
      html = tokens ? window.marked.parser(tokens) : window.marked.parse(source, { gfm: true });
      modelText = true;
      let fragment;
      try {
        fragment = window.DOMPurify.sanitize(html, {
          FORBID_TAGS, FORBID_ATTR, ADD_ATTR: ["target"], RETURN_DOM_FRAGMENT: true,
        });
      } finally {
        modelText = false;
      }
      decorate(fragment);
      return fragment;
    }
    // The libraries failed to load: plain text beats a blank panel.
    const template = document.createElement("template");
    template.innerHTML = `<p class="plain">${escapeHTML(source)}</p>`;
    return template.content;
  }

  function decorate(root) {
    for (const img of root.querySelectorAll("img")) {
      const src = img.getAttribute("src") || "";
      if (/^data:image\//i.test(src) || !/^[a-z][\w+.-]*:|^\/\//i.test(src)) continue;
      const link = document.createElement("a");
      link.href = src;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      link.textContent = `[image: ${img.getAttribute("alt") || src}]`;
      img.replaceWith(link);
    }
    for (const table of root.querySelectorAll("table")) {
      const wrap = document.createElement("div");
      wrap.className = "table-wrap";
      wrap.tabIndex = 0;  // a wide table scrolls sideways: keyboard users can scroll it too
      wrap.setAttribute("role", "region");
      wrap.setAttribute("aria-label", "Table");
      table.replaceWith(wrap);
      wrap.append(table);
    }
    for (const pre of root.querySelectorAll("pre")) {
      const code = pre.querySelector("code");
      const lang = code && /language-([\w+#.-]+)/.exec(code.className || "");
      const box = document.createElement("div");
      box.className = "code";
      if (lang && lang[1] === "mermaid") box.dataset.mermaid = "1";
      const bar = document.createElement("div");
      bar.className = "code-bar";
      const label = document.createElement("span");
      label.textContent = lang ? lang[1] : "code";
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "copy-code";
      copy.textContent = "Copy code";
      copy.addEventListener("click", async () => {
        await window.copyText(pre.textContent);
        copy.textContent = "Copied";
        setTimeout(() => { copy.textContent = "Copy code"; }, 1500);
      });
      bar.append(label, copy);
      pre.replaceWith(box);
      pre.tabIndex = 0;
      box.append(bar, pre);
    }
  }

  /* Syntax colours for finished code blocks. highlight.js escapes the code itself and emits
   * only <span class="hljs-..."> (scope classes of its grammars, never text of the model);
   * its HTML still goes through DOMPurify with nothing but spans and those classes allowed,
   * so the sanitiser's guarantees hold even if a grammar misbehaved. */
  const HLJS_CLASS = /^(hljs-[\w-]+|[a-z]+_+)$/;  // hljs-title, and sub-scopes like function_
  function highlight(nodes) {
    const hljs = window.hljs;
    if (!hljs || !window.DOMPurify) return;
    for (const node of nodes) {
      if (!node.querySelectorAll) continue;
      for (const code of node.querySelectorAll(".code:not([data-mermaid]) pre > code")) {
        const lang = /(?:^|\s)language-([\w+#.-]+)/.exec(code.className || "");
        if (!lang || lang[1] === "mermaid" || !hljs.getLanguage(lang[1])) continue;
        let html;
        try {
          html = hljs.highlight(code.textContent, { language: lang[1], ignoreIllegals: true }).value;
        } catch {
          continue;  // plain text beats a broken block
        }
        const fragment = window.DOMPurify.sanitize(html, {
          ALLOWED_TAGS: ["span"], ALLOWED_ATTR: ["class"], RETURN_DOM_FRAGMENT: true,
        });
        for (const span of fragment.querySelectorAll("[class]")) {
          const keep = span.getAttribute("class").split(/\s+/).filter((c) => HLJS_CLASS.test(c));
          if (keep.length) span.setAttribute("class", keep.join(" "));
          else span.removeAttribute("class");
        }
        if (fragment.textContent !== code.textContent) continue;  // never change the code
        code.replaceChildren(fragment);
        code.classList.add("hljs");
      }
    }
  }

  /* ```mermaid blocks of finished text, drawn with the vendored Mermaid (loaded on first use). */
  let mermaidReady = null;
  let mermaidSeq = 0;
  function loadMermaid() {
    if (!mermaidReady) {
      mermaidReady = new Promise((resolve, reject) => {
        if (window.mermaid) return resolve(window.mermaid);  // eslint-disable-line
        const script = document.createElement("script");
        script.src = "ui/static/vendor/mermaid.min.js";
        script.onload = () => {
          // LangGraph's Mermaid text brings its own light node colours: a light panel always.
          window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });
          resolve(window.mermaid);
        };
        script.onerror = () => reject(new Error("could not load Mermaid"));
        document.head.append(script);
      });
    }
    return mermaidReady;
  }

  async function drawMermaid(nodes) {
    for (const node of nodes) {
      if (!node.querySelectorAll) continue;
      const boxes = node.matches?.(".code[data-mermaid]") ? [node] : node.querySelectorAll(".code[data-mermaid]");
      for (const box of boxes) {
        const source = box.querySelector("pre").textContent;
        try {
          const mermaid = await loadMermaid();
          const { svg } = await mermaid.render(`md-mermaid-${++mermaidSeq}`, source);
          const figure = document.createElement("div");
          figure.className = "mermaid-figure";
          figure.setAttribute("role", "img");
          figure.setAttribute("aria-label", "Diagram drawn from the answer's Mermaid code");
          // Mermaid (strict) drew it; its <style> is scoped to the SVG's id, and the figure
          // contains paint (a position:fixed inside cannot leave the figure).
          figure.innerHTML = window.DOMPurify
            ? window.DOMPurify.sanitize(svg, {
              USE_PROFILES: { svg: true, svgFilters: true },
              ADD_TAGS: ["foreignObject", "style"],
              FORBID_TAGS: ["form", "input", "button", "textarea", "select"],
            })
            : "";
          box.before(figure);
          const more = box.querySelector(".code-bar span");
          if (more) more.textContent = "mermaid source";
          box.classList.add("folded");
        } catch (e) {
          const note = document.createElement("p");
          note.className = "muted";
          note.textContent = `This Mermaid diagram could not be drawn: ${e.message || e}`;
          box.after(note);
        }
      }
    }
  }

  /* One element's Markdown, fed a growing text. */
  class Stream {
    constructor(root) {
      this.root = root;
      this.text = "";
      this.blocks = [];   // finished: {raw, nodes}
      this.tail = [];     // nodes of the open blocks
      this.pending = false;
    }

    set(text, now) {
      this.text = text;
      if (now) { this.paint(true); return; }
      if (!this.pending) {
        this.pending = true;
        requestAnimationFrame(() => { if (this.pending) this.paint(false); });
      }
    }

    paint(final) {
      this.pending = false;
      const text = this.text;
      let keep = 0;
      let offset = 0;
      while (keep < this.blocks.length && text.startsWith(this.blocks[keep].raw, offset)) {
        offset += this.blocks[keep].raw.length;
        keep += 1;
      }
      for (const block of this.blocks.splice(keep)) block.nodes.forEach((n) => n.remove());
      this.tail.forEach((n) => n.remove());
      this.tail = [];
      const rest = text.slice(offset);
      if (!(window.marked && window.DOMPurify)) {
        this.tail = [...toFragment(rest).childNodes];
        this.root.append(...this.tail);
        return;
      }
      const tokens = window.marked.lexer(rest, { gfm: true });
      // The last two blocks may still change (a list grows, a fence closes): open.
      const open = final ? tokens.length : Math.max(0, tokens.length - 2);
      const drawn = [];
      for (let i = 0; i < tokens.length; i += 1) {
        const list = [tokens[i]];
        list.links = tokens.links;
        const nodes = [...toFragment(tokens[i].raw, list).childNodes];
        this.root.append(...nodes);
        if (i < open) {
          this.blocks.push({ raw: tokens[i].raw, nodes });
          drawn.push(...nodes);
        } else {
          this.tail.push(...nodes);
        }
      }
      if (drawn.length) {
        highlight(drawn);
        drawMermaid(drawn);
      }
    }
  }

  return { Stream, toFragment, loadMermaid, FORBID_TAGS, FORBID_ATTR };
})();

window.MD = MD;
