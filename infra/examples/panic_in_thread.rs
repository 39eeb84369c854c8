//! Installs the panic policy and panics in a spawned thread while the main thread waits
//! forever: the process must end with the runtime-failure code. Run by infra's tests.

fn main() {
    infra::logging::init();
    infra::panic::install();
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(|| panic!("injected\nforged line"))
        .expect("spawning the thread");
    // Without the policy the panic would end only its thread and this would hang.
    std::thread::sleep(std::time::Duration::from_secs(60));
}
