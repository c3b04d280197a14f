export * from './tracker/tracker-server.js';
