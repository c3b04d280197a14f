export * from './tracker-server.js';
export * from './tracker.config.js';
export * from './tracker-server.module.js';
