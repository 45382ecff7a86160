//! The host side of `compression.decoder`: an [`Inflater`] on a thread of its own, fed
//! the guest's input and handing back its output through bounded channels. While the
//! guest parses and writes what it got (its file writes wait on the blocking pool), the
//! next megabytes are inflated on another core: decoding, the guest's own work and the
//! writes overlap instead of taking turns.
//!
//! Bounded like the rest of the capability:
//!
//! - memory: at most [`INPUT_CHUNKS`] chunks of at most [`super::MAX_DECODE_INPUT`] bytes
//!   wait for the thread, at most [`OUTPUT_CHUNKS`] chunks of at most
//!   [`super::MAX_OUTPUT`] bytes wait for the guest, and the thread stops inflating while
//!   they do (a bomb expands only as fast as its output is taken): with the chunk in hand
//!   on each side and the inflater's buffer, about 8 MiB per decoder;
//! - threads: a decoder's thread holds one of its store's permits
//!   ([`super::MAX_DECODERS`]) until it has returned, so a guest that drops decoders and
//!   makes new ones waits for the old threads rather than piling them up;
//! - time: the thread checks between steps (each bounded by [`super::inflate`]) whether
//!   its decoder is gone, and returns; the guest's calls await it asynchronously, so the
//!   attempt's timeout ends them (a cancel is seen when the call returns, within a step
//!   or two).

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::inflate::Inflater;
use crate::runtime::wit::latest::compression;

/// Input chunks that may wait for the decoding thread.
pub const INPUT_CHUNKS: usize = 2;
/// Output chunks that may wait for the guest.
pub const OUTPUT_CHUNKS: usize = 2;

/// What the thread sends: output (never empty), the end of a complete stream (empty), or
/// the error that stopped it.
type Message = Result<Vec<u8>, String>;

/// What the thread is sent: input, or the end of it (`finish`). A closed channel without
/// an end means the decoder was dropped: the thread returns without finishing.
enum Input {
    Chunk(Vec<u8>),
    End,
}

/// A streaming decoder whose inflating runs on its own thread.
pub struct Decoder {
    /// To the thread; taken by `finish`.
    input: Option<mpsc::Sender<Input>>,
    output: mpsc::Receiver<Message>,
    /// Output received, `pending[taken..]` not yet returned.
    pending: Vec<u8>,
    taken: usize,
    /// The first error: every later call returns it.
    failed: Option<String>,
    /// The stream ended, complete, and all its output was returned.
    done: bool,
}

impl Decoder {
    /// A decoder of `format`, its thread started holding `permit` until it returns.
    pub fn start(
        format: compression::Format,
        permit: OwnedSemaphorePermit,
    ) -> std::io::Result<Self> {
        let (input_tx, input_rx) = mpsc::channel(INPUT_CHUNKS);
        let (output_tx, output_rx) = mpsc::channel(OUTPUT_CHUNKS);
        let inflater = Inflater::new(format);
        std::thread::Builder::new()
            .name("planrt-decode".into())
            .spawn(move || {
                inflate(inflater, input_rx, output_tx);
                drop(permit);
            })?;
        Ok(Self {
            input: Some(input_tx),
            output: output_rx,
            pending: Vec::new(),
            taken: 0,
            failed: None,
            done: false,
        })
    }

    fn fail(&mut self, message: String) -> String {
        self.failed = Some(message.clone());
        message
    }

    /// Hands the thread up to [`super::MAX_DECODE_INPUT`] bytes of `input` and returns
    /// how many it took, with at most `max_output` bytes of output. Waits only when it can
    /// do neither (the thread's input is full and it has no output yet): never returns
    /// nothing for a non-empty input.
    pub async fn decode(
        &mut self,
        mut input: Vec<u8>,
        max_output: usize,
    ) -> Result<(usize, Vec<u8>), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let Some(sender) = self.input.clone() else {
            return Err(self.fail("`decode` after `finish`".into()));
        };
        input.truncate(super::MAX_DECODE_INPUT);
        let offered = input.len();
        let mut chunk = Some(input).filter(|input| !input.is_empty());
        let mut used = 0;
        if chunk.is_some()
            && let Ok(permit) = sender.try_reserve()
        {
            permit.send(Input::Chunk(chunk.take().expect("checked above")));
            used = offered;
        }
        if self.taken == self.pending.len() {
            let message = match chunk {
                // Input taken, or none offered: whatever output is ready, without waiting.
                None => match self.output.try_recv() {
                    Ok(message) => Some(message),
                    Err(mpsc::error::TryRecvError::Empty) => None,
                    Err(mpsc::error::TryRecvError::Disconnected) => Some(Err(stopped())),
                },
                // Nothing can move until the thread takes input or gives output.
                Some(chunk) => {
                    let woke = tokio::select! {
                        permit = sender.reserve() => Woke::Room(permit.ok()),
                        message = self.output.recv() => Woke::Output(message),
                    };
                    match woke {
                        Woke::Room(Some(permit)) => {
                            permit.send(Input::Chunk(chunk));
                            used = offered;
                            self.output.try_recv().ok()
                        }
                        // The thread stopped: its error is in the output.
                        Woke::Room(None) => {
                            Some(self.output.recv().await.unwrap_or_else(|| Err(stopped())))
                        }
                        Woke::Output(message) => Some(message.unwrap_or_else(|| Err(stopped()))),
                    }
                }
            };
            match message {
                Some(Ok(output)) => self.take_in(output),
                Some(Err(error)) => return Err(self.fail(error)),
                None => {}
            }
        }
        Ok((used, self.take(max_output)))
    }

    /// Ends the input: the output still to come, at most `max_output` bytes per call;
    /// empty once the stream is complete, checked, and all of it was returned.
    pub async fn finish(&mut self, max_output: usize) -> Result<Vec<u8>, String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if let Some(sender) = self.input.take() {
            // The stream ends here. A thread that is gone already left its error in the
            // output.
            let _ = sender.send(Input::End).await;
        }
        while self.taken == self.pending.len() && !self.done {
            match self.output.recv().await {
                Some(Ok(output)) if output.is_empty() => self.done = true,
                Some(Ok(output)) => self.take_in(output),
                Some(Err(error)) => return Err(self.fail(error)),
                None => return Err(self.fail(stopped())),
            }
        }
        Ok(self.take(max_output))
    }

    fn take_in(&mut self, output: Vec<u8>) {
        self.pending = output;
        self.taken = 0;
    }

    /// Up to `max` bytes of the output received, oldest first.
    fn take(&mut self, max: usize) -> Vec<u8> {
        let from = self.taken;
        let to = from + max.min(self.pending.len() - from);
        self.taken = to;
        if from == 0 && to == self.pending.len() {
            // All of it: handed over without a copy.
            self.taken = 0;
            return std::mem::take(&mut self.pending);
        }
        self.pending[from..to].to_vec()
    }
}

/// What ended a wait in `decode`.
enum Woke<P> {
    /// Room for the input (`None`: the thread is gone).
    Room(Option<P>),
    /// Output, an error, or the end of the channel.
    Output(Option<Message>),
}

fn stopped() -> String {
    "the decoder stopped unexpectedly".into()
}

/// The decoding thread: inflates each chunk as it comes, sends its output, and checks the
/// end of the stream at [`Input::End`]. Ends at the first error, or as soon as it sees
/// the [`Decoder`] is gone (between steps, or when a send or a receive fails).
fn inflate(
    mut inflater: Inflater,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Message>,
) {
    let send = |message: Message| output.blocking_send(message).is_ok();
    loop {
        let chunk = match input.blocking_recv() {
            Some(Input::Chunk(chunk)) => chunk,
            Some(Input::End) => break,
            // Dropped without `finish`: nobody wants the rest.
            None => return,
        };
        let mut rest = chunk.as_slice();
        while !rest.is_empty() {
            if output.is_closed() {
                return;
            }
            match inflater.step(rest) {
                Ok((0, decoded)) if decoded.is_empty() => {
                    send(Err(format!(
                        "the {} decoder made no progress",
                        inflater.format_name()
                    )));
                    return;
                }
                Ok((used, decoded)) => {
                    rest = &rest[used..];
                    if !decoded.is_empty() && !send(Ok(decoded)) {
                        return;
                    }
                }
                Err(error) => {
                    send(Err(error));
                    return;
                }
            }
        }
    }
    loop {
        if output.is_closed() {
            return;
        }
        match inflater.finish() {
            Ok(decoded) => {
                let end = decoded.is_empty();
                if !send(Ok(decoded)) || end {
                    return;
                }
            }
            Err(error) => {
                send(Err(error));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::super::inflate::tests::{gzip, sample};
    use super::*;

    fn start(format: compression::Format) -> Decoder {
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        Decoder::start(format, permit).unwrap()
    }

    /// Decodes `input` in pieces of `piece` bytes as a guest would, asking `max` bytes
    /// per call.
    async fn decode_all(input: &[u8], piece: usize, max: usize) -> Result<Vec<u8>, String> {
        let mut decoder = start(compression::Format::Gzip);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (used, output) = decoder.decode(rest.to_vec(), max).await?;
                assert!(output.len() <= max);
                assert!(used > 0 || !output.is_empty(), "a call that did nothing");
                out.extend_from_slice(&output);
                rest = &rest[used..];
            }
        }
        loop {
            let output = decoder.finish(max).await?;
            assert!(output.len() <= max);
            if output.is_empty() {
                // Done, and asking again changes nothing.
                assert_eq!(decoder.finish(max).await?, Vec::<u8>::new());
                return Ok(out);
            }
            out.extend_from_slice(&output);
        }
    }

    #[tokio::test]
    async fn a_stream_decodes_whole_through_the_thread_in_any_pieces() {
        let data = sample(5 << 20);
        let compressed = gzip(&data);
        for (piece, max) in [(256 << 10, 1 << 20), (4096, 10_000)] {
            let out = decode_all(&compressed, piece, max).await.unwrap();
            assert!(out == data, "piece {piece}, max {max}");
        }
        let small = sample(50_000);
        let out = decode_all(&gzip(&small), 1 << 20, 1).await.unwrap();
        assert!(out == small, "a byte at a time");
    }

    #[tokio::test]
    async fn the_threads_errors_reach_the_guest_and_stay() {
        let mut corrupt = gzip(&sample(1 << 20));
        let middle = corrupt.len() / 2;
        corrupt[middle..middle + 64].fill(0xff);
        let error = decode_all(&corrupt, 64 << 10, 1 << 20).await.unwrap_err();
        assert!(error.contains("corrupt gzip"), "{error}");

        let truncated = gzip(&sample(1 << 20));
        let error = decode_all(&truncated[..truncated.len() - 100], 64 << 10, 1 << 20)
            .await
            .unwrap_err();
        assert!(error.contains("truncated"), "{error}");

        let mut decoder = start(compression::Format::Gzip);
        let first = loop {
            match decoder.decode(b"not gzip".to_vec(), 1024).await {
                Ok(_) => tokio::task::yield_now().await,
                Err(error) => break error,
            }
        };
        assert_eq!(
            decoder.decode(b"more".to_vec(), 1024).await.unwrap_err(),
            first
        );
        assert_eq!(decoder.finish(1024).await.unwrap_err(), first);
        assert_eq!(decoder.finish(1024).await.unwrap_err(), first);
    }

    #[tokio::test]
    async fn a_bomb_arrives_whole_through_small_asks_and_its_thread_waits_for_them() {
        // 64 MiB of zeros, about 64 KiB compressed.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..64 {
            std::io::Write::write_all(&mut encoder, &[0; 1 << 20]).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        let mut decoder = start(compression::Format::Gzip);
        let (used, _) = decoder.decode(bomb.clone(), 4096).await.unwrap();
        assert_eq!(used, bomb.len());
        // The thread fills its output channel, then waits for the guest.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while decoder.output.len() < OUTPUT_CHUNKS {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the channel never filled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut total = 0;
        loop {
            let output = decoder.finish(super::super::MAX_OUTPUT).await.unwrap();
            if output.is_empty() {
                break;
            }
            total += output.len();
        }
        assert_eq!(total, 64 << 20);
    }

    #[tokio::test]
    async fn one_decode_hands_the_thread_at_most_a_step_of_input() {
        let mut decoder = start(compression::Format::Deflate);
        // Empty stored blocks: 5 bytes each, no output.
        let blocks = [0u8, 0, 0, 0xff, 0xff].repeat((3 << 20) / 5);
        let (used, output) = decoder.decode(blocks, 1024).await.unwrap();
        assert!(output.is_empty());
        assert!(
            used > 0 && used <= super::super::MAX_DECODE_INPUT,
            "used {used}"
        );
    }

    #[tokio::test]
    async fn decode_after_finish_is_an_error() {
        let mut decoder = start(compression::Format::Gzip);
        decoder.decode(gzip(b"x"), 1024).await.unwrap();
        assert_eq!(decoder.finish(1024).await.unwrap(), b"x");
        assert_eq!(decoder.finish(1024).await.unwrap(), b"");
        assert!(decoder.decode(b"more".to_vec(), 1024).await.is_err());
    }

    #[tokio::test]
    async fn a_dropped_decoder_ends_its_thread_without_decoding_what_was_queued() {
        // Empty members: work without output (a fifth of a second per MiB or more: each a fresh
        // inflate state), so the thread never finds out from a send.
        let members = gzip(b"").repeat(200_000);
        let threads = Arc::new(Semaphore::new(1));
        let permit = threads.clone().try_acquire_owned().unwrap();
        let mut decoder = Decoder::start(compression::Format::Gzip, permit).unwrap();
        let mut handed = 0;
        for chunk in members.chunks(1 << 20).take(INPUT_CHUNKS + 1) {
            handed += decoder.decode(chunk.to_vec(), 1024).await.unwrap().0;
        }
        assert!(handed > 0);
        drop(decoder);
        // Its permit comes back once the thread has returned: after its current step, not
        // after the megabytes queued.
        let back = tokio::time::timeout(Duration::from_millis(200), threads.acquire()).await;
        assert!(back.is_ok(), "the thread outlived its decoder");
    }
}
