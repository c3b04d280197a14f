export * from './tracker-server.js';
