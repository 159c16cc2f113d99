/** rehome's programmatic API. */
export { RehomeProxy } from './proxy/server.js';
export { buildConfig, DEFAULTS, type ProxyConfig } from './config.js';
export { RehomeError, ProtocolError, ConfigError, MoveError } from './errors.js';
