/*
 * Deployment setting for this page. apiBase: null derives the API address from the host name
 * (usage.example.com -> https://api.example.com; same origin on localhost / IP addresses);
 * "" means "same origin"; or set a full URL such as "https://api.example.com".
 * The gateway serves this file with apiBase: "" when it serves the pages itself.
 */
window.PROXYXAI_CONFIG = { apiBase: null };
