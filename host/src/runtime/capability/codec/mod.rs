//! Native-speed hashing and decompression for plugins (`planrt:task@0.3.0`, interfaces
//! `digest` and `compression`). Inside the sandbox sha256 and inflate run as scalar
//! WebAssembly, several times slower than natively (`docs/PERFORMANCE.md`); here they run
//! as the host's own code: sha2 with the CPU's SHA instructions, flate2's inflate.
//!
//! Nothing here reaches outside the sandbox: a hasher or a decoder sees only the bytes
//! the guest hands it. What they cost the host is bounded:
//!
//! - memory: at most [`MAX_HASHERS`] hashers and [`MAX_DECODERS`] decoders live in one
//!   store (an attempt's, or a `validate` session's); a decoder holds its inflate state
//!   (about 75 KiB), about twice [`MAX_OUTPUT`] of output being made, and its channels
//!   (at most [`decoder::INPUT_CHUNKS`] chunks of [`MAX_DECODE_INPUT`] bytes in,
//!   [`decoder::OUTPUT_CHUNKS`] of [`MAX_OUTPUT`] out): about 8 MiB, and a decompression
//!   bomb only expands as fast as the guest takes its output; a list handed in is at most
//!   [`MAX_LIST`] bytes;
//! - threads: one per decoder, at most [`MAX_DECODERS`] per store, each counted until it
//!   has returned;
//! - time: a decoder's thread inflates in steps of at most [`MAX_DECODE_INPUT`] bytes of
//!   input, [`MAX_MEMBERS_PER_STEP`] gzip members and [`MAX_OUTPUT`] of output, and stops
//!   between steps once its decoder is dropped; the guest's calls await it
//!   asynchronously, so the attempt's timeout ends them. Hashing is done in the call, at
//!   most [`MAX_LIST`] bytes per call.
//!
//! One resource or list too many ends the call as a `memory-limit`, as a table past its
//! cap does.

mod decoder;
mod inflate;

use std::sync::Arc;

use tokio::sync::Semaphore;

use sha2::Digest as _;
use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime::format_err;
use wasmtime_wasi::WasiView;

use super::{AttemptSetup, CallEnd, Capability, Sandbox, rank};
use crate::plan::ErrorKind;
use crate::runtime::error::AttemptError;
use crate::runtime::state::AttemptState;
use crate::runtime::wit::latest::{compression, digest};

pub use decoder::Decoder;

/// Most hashers one store (an attempt, a `validate` session) may hold at once.
pub const MAX_HASHERS: usize = 64;
/// Most decoders one store may hold at once (and decoder threads it may have running).
pub const MAX_DECODERS: usize = 8;
/// Most output one `decode` or `finish` returns, whatever the guest asks.
pub const MAX_OUTPUT: usize = 1 << 20;
/// Most input one `decode` call hands the decoder's thread, and one step of the thread
/// inflates: with the output cap, it bounds the work between two checks of whether the
/// decoder is still wanted.
pub const MAX_DECODE_INPUT: usize = 1 << 20;
/// Most gzip members one step of a decoder's thread starts (each is a fresh inflate
/// state).
pub const MAX_MEMBERS_PER_STEP: usize = 64;
/// Longest list a guest may hand `update` or `decode`: the host copies it out of the
/// guest's memory, outside the memory limit.
pub const MAX_LIST: usize = 16 << 20;

/// A running hash (the host side of `digest.hasher`).
pub enum Hasher {
    /// SHA-256.
    Sha256(sha2::Sha256),
    /// SHA-512.
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(algorithm: digest::Algorithm) -> Self {
        match algorithm {
            digest::Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            digest::Algorithm::Sha512 => Self::Sha512(sha2::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(data),
            Self::Sha512(hasher) => hasher.update(data),
        }
    }

    /// The digest so far; the hasher starts over.
    fn finish(&mut self) -> Vec<u8> {
        match self {
            Self::Sha256(hasher) => hasher.finalize_reset().to_vec(),
            Self::Sha512(hasher) => hasher.finalize_reset().to_vec(),
        }
    }
}

/// `max-output` as the guest asked it, kept between 1 byte and [`MAX_OUTPUT`].
fn output_cap(asked: u32) -> usize {
    (asked as usize).clamp(1, MAX_OUTPUT)
}

/// How many codec resources a call holds, and the one it was refused (a store part).
#[derive(Debug, Clone)]
struct CodecCount {
    hashers: usize,
    decoders: usize,
    /// One permit per decoder thread, held until the thread has returned (it may outlive
    /// its decoder by a step).
    threads: Arc<Semaphore>,
    refused: Option<String>,
}

impl Default for CodecCount {
    fn default() -> Self {
        Self {
            hashers: 0,
            decoders: 0,
            threads: Arc::new(Semaphore::new(MAX_DECODERS)),
            refused: None,
        }
    }
}

/// The codec capability: `digest` and `compression`.
#[derive(Debug, Clone, Copy)]
pub struct Codec;

impl Capability for Codec {
    fn rank(&self) -> u8 {
        rank::LIMIT
    }

    fn init(&self, linker: &mut Linker<AttemptState>) -> wasmtime::Result<()> {
        digest::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| state)?;
        compression::add_to_linker::<_, HasSelf<AttemptState>>(linker, |state| state)
    }

    fn prepare(
        &self,
        _sandbox: &Sandbox,
        _setup: &mut AttemptSetup<'_>,
    ) -> Result<(), AttemptError> {
        // The counts are made by the first hasher or decoder (`codec_count`): an attempt
        // that uses neither pays nothing.
        Ok(())
    }

    fn conclude(
        &self,
        _sandbox: &Sandbox,
        state: &AttemptState,
        end: &CallEnd<'_>,
    ) -> Option<AttemptError> {
        let refused = state.part::<CodecCount>()?.refused.clone()?;
        end.error.is_some().then_some(AttemptError::Capability {
            kind: ErrorKind::MemoryLimit,
            message: refused,
        })
    }
}

impl AttemptState {
    fn codec_count(&mut self) -> &mut CodecCount {
        self.part_or_insert_with(CodecCount::default)
    }

    /// Ends the call: `message` becomes its `memory-limit` outcome.
    fn refuse(&mut self, message: String) -> wasmtime::Error {
        let error = format_err!("{message}");
        self.codec_count().refused = Some(message);
        error
    }

    /// Counts one more resource of a kind, or refuses it past `max` (the call then ends).
    fn admit(
        &mut self,
        count: impl Fn(&mut CodecCount) -> &mut usize,
        max: usize,
        what: &str,
    ) -> wasmtime::Result<()> {
        let live = count(self.codec_count());
        if *live >= max {
            return Err(self.refuse(format!("exceeded the limit of {max} {what} open at once")));
        }
        *live += 1;
        Ok(())
    }

    /// Refuses a list past [`MAX_LIST`] (the call then ends).
    fn check_list(&mut self, len: usize, what: &str) -> wasmtime::Result<()> {
        if len > MAX_LIST {
            return Err(self.refuse(format!(
                "handed `{what}` {len} bytes at once, over the limit of {MAX_LIST}"
            )));
        }
        Ok(())
    }
}

impl digest::Host for AttemptState {}

impl digest::HostHasher for AttemptState {
    fn new(&mut self, algorithm: digest::Algorithm) -> wasmtime::Result<Resource<Hasher>> {
        self.admit(|c| &mut c.hashers, MAX_HASHERS, "hashers")?;
        Ok(self.ctx().table.push(Hasher::new(algorithm))?)
    }

    fn update(&mut self, hasher: Resource<Hasher>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.check_list(data.len(), "hasher.update")?;
        self.ctx().table.get_mut(&hasher)?.update(&data);
        Ok(())
    }

    fn finish(&mut self, hasher: Resource<Hasher>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.ctx().table.get_mut(&hasher)?.finish())
    }

    fn drop(&mut self, hasher: Resource<Hasher>) -> wasmtime::Result<()> {
        self.ctx().table.delete(hasher)?;
        let count = self.codec_count();
        count.hashers = count.hashers.saturating_sub(1);
        Ok(())
    }
}

impl compression::Host for AttemptState {}

impl compression::HostDecoder for AttemptState {
    async fn new(&mut self, format: compression::Format) -> wasmtime::Result<Resource<Decoder>> {
        self.admit(|c| &mut c.decoders, MAX_DECODERS, "decoders")?;
        // The threads of decoders dropped a moment ago may still be ending their step.
        let threads = self.codec_count().threads.clone();
        let permit = threads
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let decoder = match Decoder::start(format, permit) {
            Ok(decoder) => decoder,
            Err(error) => {
                // Not counted: nothing was made.
                self.codec_count().decoders -= 1;
                return Err(format_err!("starting a decoder's thread: {error}"));
            }
        };
        Ok(self.ctx().table.push(decoder)?)
    }

    async fn decode(
        &mut self,
        decoder: Resource<Decoder>,
        input: Vec<u8>,
        max_output: u32,
    ) -> wasmtime::Result<Result<(u32, Vec<u8>), String>> {
        self.check_list(input.len(), "decoder.decode")?;
        let decoder = self.ctx().table.get_mut(&decoder)?;
        Ok(decoder
            .decode(input, output_cap(max_output))
            .await
            // `used` is at most `input.len()`, which came from a 32-bit guest list.
            .map(|(used, output)| (used as u32, output)))
    }

    async fn finish(
        &mut self,
        decoder: Resource<Decoder>,
        max_output: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        let decoder = self.ctx().table.get_mut(&decoder)?;
        Ok(decoder.finish(output_cap(max_output)).await)
    }

    fn drop(&mut self, decoder: Resource<Decoder>) -> wasmtime::Result<()> {
        self.ctx().table.delete(decoder)?;
        let count = self.codec_count();
        count.decoders = count.decoders.saturating_sub(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::WasiCtx;

    #[test]
    fn sha256_and_sha512_match_the_known_answers_and_start_over_after_finish() {
        let mut hasher = Hasher::new(digest::Algorithm::Sha256);
        hasher.update(b"ab");
        hasher.update(b"c");
        assert_eq!(
            hex::encode(hasher.finish()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(hasher.finish()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "after finish it hashes from empty"
        );
        let mut hasher = Hasher::new(digest::Algorithm::Sha512);
        hasher.update(b"abc");
        assert_eq!(
            hex::encode(hasher.finish()),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    #[tokio::test]
    async fn a_store_holds_a_bounded_number_of_codecs_and_a_drop_frees_a_place() {
        let mut state = AttemptState::new(WasiCtx::builder().build(), Default::default());
        let mut open = Vec::new();
        for _ in 0..MAX_DECODERS {
            open.push(
                compression::HostDecoder::new(&mut state, compression::Format::Gzip)
                    .await
                    .unwrap(),
            );
        }
        compression::HostDecoder::drop(&mut state, open.pop().unwrap()).unwrap();
        open.push(
            compression::HostDecoder::new(&mut state, compression::Format::Zlib)
                .await
                .unwrap(),
        );
        let error = compression::HostDecoder::new(&mut state, compression::Format::Gzip)
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("exceeded the limit of {MAX_DECODERS} decoders open at once")
        );
        let end = CallEnd {
            error: Some(&error),
            timed_out: false,
            output_len: None,
        };
        let claim = Codec.conclude(&Sandbox::default(), &state, &end).unwrap();
        assert_eq!(claim.kind(), ErrorKind::MemoryLimit);

        let mut state = AttemptState::new(WasiCtx::builder().build(), Default::default());
        let mut hashers = Vec::new();
        for _ in 0..MAX_HASHERS {
            hashers.push(digest::HostHasher::new(&mut state, digest::Algorithm::Sha256).unwrap());
        }
        assert!(digest::HostHasher::new(&mut state, digest::Algorithm::Sha256).is_err());
        let end = CallEnd {
            error: None,
            timed_out: false,
            output_len: Some(2),
        };
        assert_eq!(
            Codec.conclude(&Sandbox::default(), &state, &end),
            None,
            "a call that ended well is not claimed"
        );
        let hasher = hashers.pop().unwrap();
        let error = digest::HostHasher::update(&mut state, hasher, vec![0; MAX_LIST + 1]);
        assert!(error.unwrap_err().to_string().contains("over the limit"));
    }

    #[test]
    fn output_cap_is_between_one_byte_and_a_mebibyte() {
        assert_eq!(output_cap(0), 1);
        assert_eq!(output_cap(4096), 4096);
        assert_eq!(output_cap(u32::MAX), MAX_OUTPUT);
    }
}
