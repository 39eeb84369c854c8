//! What the edge-node and host web panels share.
