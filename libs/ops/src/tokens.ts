/** The app's loaded config object (also provided under its own class). */
export const APP_CONFIG = Symbol('APP_CONFIG');
/** The shared swarm token (or undefined when none is configured). */
export const SWARM_TOKEN = Symbol('SWARM_TOKEN');
