/** rehome's programmatic API. */
export { RehomeProxy, type StartOptions } from './proxy/server.js';
export { startRehome } from './start.js';
export { buildConfig, DEFAULTS, type ProxyConfig } from './config.js';
export { RehomeError, ProtocolError, ConfigError, MoveError } from './errors.js';
