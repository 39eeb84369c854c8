//! The one panic policy of every binary: a panic in any thread (a tokio worker, a
//! blocking thread, the broker's own threads) is logged and ends the whole process with
//! [`Exit::RuntimeFailure`], so the service manager's `Restart=` takes over instead of a
//! process living on with a dead part.

use std::panic::PanicHookInfo;

use crate::Exit;
use crate::logging::Escaped;

/// Installs the hook; call once at the start of `main`, after the log is set up.
pub fn install() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = message(info);
        tracing::error!(
            thread = %Escaped(thread),
            location = %location,
            message = %Escaped(&message),
            "panic; exiting"
        );
        // Also on stderr directly: the log may be filtered off or not set up yet.
        eprintln!("panic in thread {thread:?} at {location}: {message:?}; exiting");
        std::process::exit(Exit::RuntimeFailure as i32);
    }));
}

/// The panic's message: `panic!` with a literal or with format arguments.
fn message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}
