/*
 * ProxyXAI docs: rewrites the links to the balance and sub-account sites when the docs are deployed on
 * their own host, and shows the API address this site's pages would use. Vanilla JS, no build step.
 */
(function () {
  'use strict';

  // Shared helpers: common.js, a byte-identical copy in every page folder, loaded before this file.
  const { resolveApiBase, displayBase, fixSiteLinks } = window.PROXYXAI_COMMON;

  /* ---------- docs ---------- */

  fixSiteLinks('docs');
  const api = resolveApiBase();
  for (const node of document.querySelectorAll('.detected-api-base')) {
    node.textContent = displayBase(api.base);
  }
})();
