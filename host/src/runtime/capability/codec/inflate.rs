//! The decoding engine of `compression.decoder`: flate2's push decoders fed the guest's
//! bytes, bounded per call in input ([`MAX_DECODE_INPUT`]), gzip members
//! ([`MAX_MEMBERS_PER_CALL`]) and output (the caller's `max_output`), holding at most
//! about twice that output. Synchronous: a [`super::decoder::Decoder`] runs it on a thread
//! of its own.

use std::io::Write;

use flate2::write::{DeflateDecoder, GzDecoder, ZlibDecoder};

use super::{MAX_DECODE_INPUT, MAX_MEMBERS_PER_CALL};
use crate::runtime::wit::latest::compression;

/// flate2's push decoders, writing their output into a `Vec` the [`Inflater`] drains. A
/// gzip file of several members gets one `GzDecoder` per member, started by the
/// [`Inflater`] (so it can bound how many one call starts).
enum Inflate {
    Gzip(GzDecoder<Vec<u8>>),
    Zlib(ZlibDecoder<Vec<u8>>),
    Deflate(DeflateDecoder<Vec<u8>>),
}

impl Inflate {
    fn write(&mut self, input: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Gzip(decoder) => decoder.write(input),
            Self::Zlib(decoder) => decoder.write(input),
            Self::Deflate(decoder) => decoder.write(input),
        }
    }

    fn try_finish(&mut self) -> std::io::Result<()> {
        match self {
            Self::Gzip(decoder) => decoder.try_finish(),
            Self::Zlib(decoder) => decoder.try_finish(),
            Self::Deflate(decoder) => decoder.try_finish(),
        }
    }

    /// Output produced: `held()[returned..]` is not yet returned.
    fn held(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Gzip(decoder) => decoder.get_mut(),
            Self::Zlib(decoder) => decoder.get_mut(),
            Self::Deflate(decoder) => decoder.get_mut(),
        }
    }
}

/// A streaming decoder, synchronous: what a [`super::decoder::Decoder`]'s thread runs.
pub(super) struct Inflater {
    inflate: Inflate,
    format: compression::Format,
    /// How much of the held output was already returned.
    returned: usize,
    /// gzip: the last member was followed by zero bytes, which may only go on to the end
    /// (as tar and gzip accept padding).
    padding: bool,
    /// The first error: every later call returns it.
    failed: Option<String>,
    /// `finish` checked the end of the stream.
    finished: bool,
}

impl Inflater {
    pub(super) fn new(format: compression::Format) -> Self {
        let inflate = match format {
            compression::Format::Gzip => Inflate::Gzip(GzDecoder::new(Vec::new())),
            compression::Format::Zlib => Inflate::Zlib(ZlibDecoder::new(Vec::new())),
            compression::Format::Deflate => Inflate::Deflate(DeflateDecoder::new(Vec::new())),
        };
        Self {
            inflate,
            format,
            returned: 0,
            padding: false,
            failed: None,
            finished: false,
        }
    }

    pub(super) fn format_name(&self) -> &'static str {
        match self.format {
            compression::Format::Gzip => "gzip",
            compression::Format::Zlib => "zlib",
            compression::Format::Deflate => "deflate",
        }
    }

    fn fail(&mut self, message: String) -> String {
        self.failed = Some(message.clone());
        message
    }

    /// Output produced and not yet returned.
    fn pending(&mut self) -> usize {
        let returned = self.returned;
        self.inflate.held().len() - returned
    }

    /// Decodes from the start of `input` until it is used up, `max_output` bytes of
    /// output are held, or the call's budget ([`MAX_DECODE_INPUT`],
    /// [`MAX_MEMBERS_PER_CALL`]) is spent; returns the bytes used and at most `max_output`
    /// bytes of output.
    pub(super) fn decode(
        &mut self,
        input: &[u8],
        max_output: usize,
    ) -> Result<(usize, Vec<u8>), String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if self.finished {
            return Err(self.fail("`decode` after `finish`".into()));
        }
        // The input this call may use.
        let budget = &input[..input.len().min(MAX_DECODE_INPUT)];
        let mut used = 0;
        let mut members = 0;
        while used < budget.len() && self.pending() < max_output {
            let rest = &budget[used..];
            if self.padding {
                let zeros = rest.iter().take_while(|b| **b == 0).count();
                if zeros == 0 {
                    let message = format!(
                        "{} bytes of data after the zero padding that ends the gzip stream",
                        input.len() - used
                    );
                    return Err(self.fail(message));
                }
                used += zeros;
                continue;
            }
            match self.inflate.write(rest) {
                Ok(0) => {
                    // The stream ended with input left, or can go no further (flate2
                    // says 0 for both): checking its end tells which.
                    if let Err(error) = self.inflate.try_finish() {
                        let message = format!("corrupt {} data: {error}", self.format_name());
                        return Err(self.fail(message));
                    }
                    let Inflate::Gzip(member) = &mut self.inflate else {
                        let message = format!(
                            "{} bytes after the end of the {} stream",
                            input.len() - used,
                            self.format_name()
                        );
                        return Err(self.fail(message));
                    };
                    if rest[0] == 0 {
                        // No member starts with 0 (gzip's magic is 1f 8b).
                        self.padding = true;
                    } else if members == MAX_MEMBERS_PER_CALL {
                        break;
                    } else {
                        members += 1;
                        let held = std::mem::take(member.get_mut());
                        *member = GzDecoder::new(held);
                    }
                }
                Ok(n) => used += n,
                Err(error) => {
                    let message = format!("corrupt {} data: {error}", self.format_name());
                    return Err(self.fail(message));
                }
            }
        }
        Ok((used, self.take_output(max_output)))
    }

    /// Ends the input: the output still held, at most `max_output` bytes per call; empty
    /// once all of it was returned. An error if the stream is incomplete or a checksum
    /// does not match.
    pub(super) fn finish(&mut self, max_output: usize) -> Result<Vec<u8>, String> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        if !self.finished {
            if let Err(error) = self.inflate.try_finish() {
                let message = match error.kind() {
                    std::io::ErrorKind::UnexpectedEof => {
                        format!("the {} stream is truncated", self.format_name())
                    }
                    _ => format!("corrupt {} data: {error}", self.format_name()),
                };
                return Err(self.fail(message));
            }
            self.finished = true;
        }
        Ok(self.take_output(max_output))
    }

    /// Up to `max` bytes of the held output, oldest first. What was returned is dropped
    /// from the front once it is half the buffer, so the buffer stays under about twice
    /// `max` plus one inflate buffer, at a constant cost per byte.
    fn take_output(&mut self, max: usize) -> Vec<u8> {
        let from = self.returned;
        let held = self.inflate.held();
        let to = from + max.min(held.len() - from);
        let output = held[from..to].to_vec();
        self.returned = if to == held.len() {
            held.clear();
            0
        } else if to >= held.len() / 2 {
            held.drain(..to);
            0
        } else {
            to
        };
        output
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::runtime::capability::codec::MAX_OUTPUT;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};

    pub(in crate::runtime::capability::codec) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    /// Decodes `input` fed in pieces of `piece` bytes, asking `max` bytes of output per
    /// call, as a guest would; checks every call stays under `max`.
    fn decode_all(
        format: compression::Format,
        input: &[u8],
        piece: usize,
        max: usize,
    ) -> Result<Vec<u8>, String> {
        let mut decoder = Inflater::new(format);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            let mut rest = chunk;
            loop {
                let (used, output) = decoder.decode(rest, max)?;
                assert!(output.len() <= max, "{} > {max}", output.len());
                out.extend_from_slice(&output);
                rest = &rest[used..];
                if rest.is_empty() && output.is_empty() {
                    break;
                }
                assert!(used > 0 || !output.is_empty(), "a call that does nothing");
            }
        }
        loop {
            let output = decoder.finish(max)?;
            assert!(output.len() <= max);
            if output.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&output);
        }
    }

    pub(in crate::runtime::capability::codec) fn sample(len: usize) -> Vec<u8> {
        // Compressible, with some variety.
        (0..len).map(|i| (i * 7 / 13 % 251) as u8).collect()
    }

    #[test]
    fn gzip_decodes_in_any_pieces_with_bounded_output() {
        let data = sample(3 << 20);
        let compressed = gzip(&data);
        for (piece, max) in [
            (1 << 20, 1 << 20),
            (4096, 100_000),
            (7, 65_536),
            (65_536, 1),
        ] {
            let out = decode_all(compression::Format::Gzip, &compressed, piece, max).unwrap();
            assert!(out == data, "piece {piece}, max {max}");
        }
    }

    #[test]
    fn several_gzip_members_are_one_stream() {
        let mut both = gzip(b"first ");
        both.extend(gzip(b"second"));
        let out = decode_all(compression::Format::Gzip, &both, 5, 1024).unwrap();
        assert_eq!(out, b"first second");
    }

    #[test]
    fn zlib_and_raw_deflate_decode_and_refuse_trailing_data() {
        let data = sample(200_000);
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
        zlib.write_all(&data).unwrap();
        let mut zlib = zlib.finish().unwrap();
        assert!(decode_all(compression::Format::Zlib, &zlib, 1000, 50_000).unwrap() == data);

        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        deflate.write_all(&data).unwrap();
        let deflate = deflate.finish().unwrap();
        assert!(decode_all(compression::Format::Deflate, &deflate, 333, 8192).unwrap() == data);

        zlib.extend_from_slice(b"junk");
        let error = decode_all(compression::Format::Zlib, &zlib, 1 << 20, 1 << 20).unwrap_err();
        assert!(
            error.contains("after the end of the zlib stream"),
            "{error}"
        );
    }

    #[test]
    fn a_bomb_expands_only_as_fast_as_output_is_taken() {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0; 64 << 20]);
        let mut decoder = Inflater::new(compression::Format::Gzip);
        let (used, output) = decoder.decode(&bomb, 4096).unwrap();
        assert_eq!(output.len(), 4096);
        assert!(
            used < bomb.len(),
            "input is left unused while output is held"
        );
        let held = decoder.pending();
        assert!(held < 64 << 10, "held {held} bytes for a 4 KiB ask");
        // Taken in small pieces, the buffer does not grow with what was returned.
        for _ in 0..1000 {
            let (_, output) = decoder.decode(&[], 4096).unwrap();
            assert!(output.len() <= 4096);
            let buffer = decoder.inflate.held().len();
            assert!(buffer < 2 * 4096 + (64 << 10), "a buffer of {buffer} bytes");
        }
    }

    #[test]
    fn truncated_corrupt_and_wrong_checksum_streams_fail_and_stay_failed() {
        let data = sample(100_000);
        let compressed = gzip(&data);

        let truncated = &compressed[..compressed.len() / 2];
        let error = decode_all(compression::Format::Gzip, truncated, 1 << 20, 1 << 20).unwrap_err();
        assert!(error.contains("truncated"), "{error}");

        let mut bad_crc = compressed.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 1;
        let error = decode_all(compression::Format::Gzip, &bad_crc, 1 << 20, 1 << 20).unwrap_err();
        assert!(error.contains("corrupt gzip"), "{error}");

        let mut decoder = Inflater::new(compression::Format::Gzip);
        let error = decoder.decode(b"not gzip at all", 1024).unwrap_err();
        assert!(error.contains("corrupt gzip"), "{error}");
        assert_eq!(decoder.decode(&compressed, 1024).unwrap_err(), error);
        assert_eq!(decoder.finish(1024).unwrap_err(), error);

        let error = decode_all(compression::Format::Gzip, b"", 1, 1).unwrap_err();
        assert!(error.contains("truncated"), "an empty stream: {error}");
    }

    #[test]
    fn zero_padding_may_end_a_gzip_file_but_nothing_may_follow_it() {
        let mut padded = gzip(b"data");
        padded.extend([0; 1000]);
        let out = decode_all(compression::Format::Gzip, &padded, 300, 1024).unwrap();
        assert_eq!(out, b"data");

        padded.extend(gzip(b"more"));
        let error = decode_all(compression::Format::Gzip, &padded, 1 << 20, 1024).unwrap_err();
        assert!(error.contains("after the zero padding"), "{error}");
    }

    #[test]
    fn one_call_starts_a_bounded_number_of_members_and_uses_bounded_input() {
        // Empty members: no output, a fresh inflate state each.
        let members: Vec<u8> = (0..1000).flat_map(|_| gzip(b"")).collect();
        let mut decoder = Inflater::new(compression::Format::Gzip);
        let (used, output) = decoder.decode(&members, MAX_OUTPUT).unwrap();
        assert!(output.is_empty());
        assert!(
            used < members.len(),
            "one call went through all 1000 members"
        );
        assert!(
            decode_all(compression::Format::Gzip, &members, 1 << 20, 1024)
                .unwrap()
                .is_empty()
        );

        let noise: Vec<u8> = (0..3u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let compressed = gzip(&noise);
        let mut decoder = Inflater::new(compression::Format::Gzip);
        let (used, _) = decoder.decode(&compressed, MAX_OUTPUT).unwrap();
        assert!(used <= MAX_DECODE_INPUT + (32 << 10), "used {used}");
    }

    #[test]
    fn input_that_yields_no_output_is_still_used_at_most_a_budget_per_call() {
        // Empty stored blocks (not final): 5 bytes each, no output at all.
        let mut blocks: Vec<u8> = [0u8, 0, 0, 0xff, 0xff].repeat((3 << 20) / 5);
        blocks.extend([1, 0, 0, 0xff, 0xff]);
        let mut decoder = Inflater::new(compression::Format::Deflate);
        let (used, output) = decoder.decode(&blocks, MAX_OUTPUT).unwrap();
        assert!(output.is_empty());
        assert!(used > 0 && used <= MAX_DECODE_INPUT, "used {used}");
        assert!(
            decode_all(compression::Format::Deflate, &blocks, 4 << 20, 1024)
                .unwrap()
                .is_empty()
        );

        let mut padded = gzip(b"x");
        padded.extend(vec![0; 3 << 20]);
        let mut decoder = Inflater::new(compression::Format::Gzip);
        let (used, _) = decoder.decode(&padded, MAX_OUTPUT).unwrap();
        assert!(used <= MAX_DECODE_INPUT, "padding: used {used}");
    }

    #[test]
    fn truncated_zlib_and_deflate_streams_fail() {
        let data = sample(100_000);
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        let error = decode_all(
            compression::Format::Zlib,
            &zlib[..zlib.len() - 3],
            1 << 20,
            1 << 20,
        )
        .unwrap_err();
        assert!(error.contains("truncated"), "{error}");

        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        deflate.write_all(&data).unwrap();
        let deflate = deflate.finish().unwrap();
        let half = &deflate[..deflate.len() / 2];
        let error = decode_all(compression::Format::Deflate, half, 1 << 20, 1 << 20).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn decode_after_finish_is_an_error() {
        let mut decoder = Inflater::new(compression::Format::Gzip);
        let compressed = gzip(b"x");
        decoder.decode(&compressed, 1024).unwrap();
        assert_eq!(decoder.finish(1024).unwrap(), b"x");
        assert!(decoder.decode(b"more", 1024).is_err());
    }
}
