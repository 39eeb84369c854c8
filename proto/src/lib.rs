//! Eclipse Sparkplug B 3.0, as a pure library: no sockets, no files, no clocks.
