//! Shared pieces of this crate's XDP objects. The XDP programs themselves are the binary
//! targets (`sensor`, and the benchmark-only `pass` and `trafgen`), built for
//! `bpfel-unknown-none`; this library also lets `sensor` name the crate as a build-dependency,
//! so cargo rebuilds it when the programs change.
#![no_std]

/// Defines what every XDP object of this crate needs: the panic handler (never reached: the
/// verifier rejects programs that could panic) and the licence section (GPL-compatible, as
/// some helpers require).
#[macro_export]
macro_rules! xdp_object {
    () => {
        #[cfg(not(test))]
        #[panic_handler]
        fn panic(_info: &core::panic::PanicInfo) -> ! {
            loop {}
        }

        #[unsafe(link_section = "license")]
        #[unsafe(no_mangle)]
        static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
    };
}
