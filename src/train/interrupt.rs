//! Ctrl-C during training: the first SIGINT asks the trainer to stop after the step under way
//! (it then saves a checkpoint that resumes exactly there); a second one exits at once with the
//! shell's code for SIGINT, 130. Only `hepar train` installs the handler; a library caller gets
//! the stop by calling [`request_stop`].

use std::sync::atomic::{AtomicUsize, Ordering};

/// The exit code of a process stopped by SIGINT (128 + 2), the shell convention.
pub const EXIT_CODE: i32 = 130;

/// SIGINTs (or [`request_stop`] calls) received so far.
static STOP_REQUESTS: AtomicUsize = AtomicUsize::new(0);

/// Asks the running training to stop after its current step.
pub fn request_stop() {
    STOP_REQUESTS.fetch_add(1, Ordering::SeqCst);
}

/// Whether a stop was asked for.
pub fn stop_requested() -> bool {
    STOP_REQUESTS.load(Ordering::SeqCst) > 0
}

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    // Only async-signal-safe calls here: an atomic, write(2) and _exit(2).
    let before = STOP_REQUESTS.fetch_add(1, Ordering::SeqCst);
    let message: &[u8] = if before == 0 {
        b"\ninterrupt: stopping after this step to save a checkpoint (Ctrl-C again quits at once)\n"
    } else {
        b"\ninterrupt again: quitting without saving\n"
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is static.
    unsafe {
        libc::write(2, message.as_ptr().cast(), message.len());
        if before > 0 {
            libc::_exit(EXIT_CODE);
        }
    }
}

/// Routes SIGINT to the trainer as the module describes. A no-op where there are no signals.
pub fn install_sigint_handler() -> crate::error::Result<()> {
    #[cfg(unix)]
    {
        // SAFETY: a zeroed sigaction is a valid start; the handler only makes signal-safe calls.
        let failed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut()) != 0
        };
        if failed {
            return Err(crate::error::HeparError::invalid(
                "train",
                format!(
                    "could not install the Ctrl-C handler: {}",
                    std::io::Error::last_os_error()
                ),
            ));
        }
    }
    Ok(())
}
