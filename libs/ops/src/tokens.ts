/**
 * The app's loaded config object as validated at boot, for the config reloader only (it needs
 * where the config came from). Providers read config through ConfigService.
 */
export const LOADED_CONFIG = Symbol('LOADED_CONFIG');
/** The shared swarm token (or undefined when none is configured). */
export const SWARM_TOKEN = Symbol('SWARM_TOKEN');
