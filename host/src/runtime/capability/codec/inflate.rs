//! The decoding engine of `compression.decoder`: flate2's push decoders, run in steps by
//! a [`super::decoder::Decoder`]'s thread. A step decodes one chunk of input until it is
//! used up, [`MAX_OUTPUT`] bytes of output are made (plus at most one inflate buffer), or
//! [`MAX_MEMBERS_PER_STEP`] gzip members were started: the work between two of the
//! thread's checks of whether its decoder is still wanted.

use std::io::Write;

use flate2::write::{DeflateDecoder, GzDecoder, ZlibDecoder};

use super::{MAX_MEMBERS_PER_STEP, MAX_OUTPUT};
use crate::runtime::wit::latest::compression;

/// flate2's push decoders, writing their output into a `Vec` the [`Inflater`] hands on. A
/// gzip file of several members gets one `GzDecoder` per member, started by the
/// [`Inflater`] (so it can bound how many one step starts).
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

    /// Output made and not yet handed on.
    fn held(&mut self) -> &mut Vec<u8> {
        match self {
            Self::Gzip(decoder) => decoder.get_mut(),
            Self::Zlib(decoder) => decoder.get_mut(),
            Self::Deflate(decoder) => decoder.get_mut(),
        }
    }
}

/// A streaming decoder, synchronous: what a [`super::decoder::Decoder`]'s thread runs. An
/// error is final: the thread reports it and stops.
pub(super) struct Inflater {
    inflate: Inflate,
    format: compression::Format,
    /// gzip: the last member was followed by zero bytes, which may only go on to the end
    /// (as tar and gzip accept padding).
    padding: bool,
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
            padding: false,
        }
    }

    pub(super) fn format_name(&self) -> &'static str {
        match self.format {
            compression::Format::Gzip => "gzip",
            compression::Format::Zlib => "zlib",
            compression::Format::Deflate => "deflate",
        }
    }

    /// One step: decodes from the start of `input` until it is used up, [`MAX_OUTPUT`]
    /// bytes of output are made, or [`MAX_MEMBERS_PER_STEP`] gzip members were started;
    /// returns the bytes used and the output made.
    pub(super) fn step(&mut self, input: &[u8]) -> Result<(usize, Vec<u8>), String> {
        let mut used = 0;
        let mut members = 0;
        while used < input.len() && self.inflate.held().len() < MAX_OUTPUT {
            let rest = &input[used..];
            if self.padding {
                let zeros = rest.iter().take_while(|b| **b == 0).count();
                if zeros == 0 {
                    return Err(format!(
                        "{} bytes of data after the zero padding that ends the gzip stream",
                        rest.len()
                    ));
                }
                used += zeros;
                continue;
            }
            match self.inflate.write(rest) {
                Ok(0) => {
                    // The stream ended with input left, or can go no further (flate2
                    // says 0 for both): checking its end tells which.
                    if let Err(error) = self.inflate.try_finish() {
                        return Err(format!("corrupt {} data: {error}", self.format_name()));
                    }
                    let Inflate::Gzip(member) = &mut self.inflate else {
                        return Err(format!(
                            "{} bytes after the end of the {} stream",
                            rest.len(),
                            self.format_name()
                        ));
                    };
                    if rest[0] == 0 {
                        // No member starts with 0 (gzip's magic is 1f 8b).
                        self.padding = true;
                    } else if members == MAX_MEMBERS_PER_STEP {
                        break;
                    } else {
                        members += 1;
                        let held = std::mem::take(member.get_mut());
                        *member = GzDecoder::new(held);
                    }
                }
                Ok(n) => used += n,
                Err(error) => return Err(format!("corrupt {} data: {error}", self.format_name())),
            }
        }
        Ok((used, self.hand_on()))
    }

    /// Ends the input: the output still to come, empty once there is none. An error if
    /// the stream is incomplete or a checksum does not match.
    pub(super) fn finish(&mut self) -> Result<Vec<u8>, String> {
        if let Err(error) = self.inflate.try_finish() {
            return Err(match error.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    format!("the {} stream is truncated", self.format_name())
                }
                _ => format!("corrupt {} data: {error}", self.format_name()),
            });
        }
        Ok(self.hand_on())
    }

    /// The output made, handed on whole; the next is made into a fresh buffer.
    fn hand_on(&mut self) -> Vec<u8> {
        let held = self.inflate.held();
        if held.is_empty() {
            return Vec::new();
        }
        std::mem::replace(held, Vec::with_capacity(MAX_OUTPUT))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{GzEncoder, ZlibEncoder};

    pub(in crate::runtime::capability::codec) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    pub(in crate::runtime::capability::codec) fn sample(len: usize) -> Vec<u8> {
        // Compressible, with some variety.
        (0..len).map(|i| (i * 7 / 13 % 251) as u8).collect()
    }

    /// Decodes `input` fed in pieces of `piece` bytes, step by step as the thread does;
    /// checks every step stays under its output bound and moves.
    fn decode_all(
        format: compression::Format,
        input: &[u8],
        piece: usize,
    ) -> Result<Vec<u8>, String> {
        let mut inflater = Inflater::new(format);
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let (used, output) = inflater.step(rest)?;
                assert!(output.len() <= MAX_OUTPUT + (64 << 10), "{}", output.len());
                assert!(used > 0 || !output.is_empty(), "a step that did nothing");
                out.extend_from_slice(&output);
                rest = &rest[used..];
            }
        }
        loop {
            let output = inflater.finish()?;
            if output.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&output);
        }
    }

    #[test]
    fn gzip_decodes_in_any_pieces() {
        let data = sample(3 << 20);
        let compressed = gzip(&data);
        for piece in [1 << 20, 4096, 7] {
            let out = decode_all(compression::Format::Gzip, &compressed, piece).unwrap();
            assert!(out == data, "piece {piece}");
        }
    }

    #[test]
    fn several_gzip_members_are_one_stream() {
        let mut both = gzip(b"first ");
        both.extend(gzip(b"second"));
        let out = decode_all(compression::Format::Gzip, &both, 5).unwrap();
        assert_eq!(out, b"first second");
    }

    #[test]
    fn zlib_and_raw_deflate_decode_and_refuse_trailing_data() {
        let data = sample(200_000);
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
        zlib.write_all(&data).unwrap();
        let mut zlib = zlib.finish().unwrap();
        assert!(decode_all(compression::Format::Zlib, &zlib, 1000).unwrap() == data);

        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::best());
        deflate.write_all(&data).unwrap();
        let deflate = deflate.finish().unwrap();
        assert!(decode_all(compression::Format::Deflate, &deflate, 333).unwrap() == data);

        zlib.extend_from_slice(b"junk");
        let error = decode_all(compression::Format::Zlib, &zlib, 1 << 20).unwrap_err();
        assert!(
            error.contains("4 bytes after the end of the zlib stream"),
            "{error}"
        );
    }

    #[test]
    fn a_bomb_expands_a_bounded_amount_per_step() {
        // 64 MiB of zeros compress to about 64 KiB.
        let bomb = gzip(&vec![0; 64 << 20]);
        let mut inflater = Inflater::new(compression::Format::Gzip);
        let (used, output) = inflater.step(&bomb).unwrap();
        assert!(output.len() >= MAX_OUTPUT && output.len() < MAX_OUTPUT + (64 << 10));
        assert!(used < bomb.len(), "input is left for the next step");
    }

    #[test]
    fn truncated_corrupt_and_wrong_checksum_streams_fail() {
        let data = sample(100_000);
        let compressed = gzip(&data);

        let truncated = &compressed[..compressed.len() / 2];
        let error = decode_all(compression::Format::Gzip, truncated, 1 << 20).unwrap_err();
        assert!(error.contains("truncated"), "{error}");

        let mut bad_crc = compressed.clone();
        let crc_at = bad_crc.len() - 8;
        bad_crc[crc_at] ^= 1;
        let error = decode_all(compression::Format::Gzip, &bad_crc, 1 << 20).unwrap_err();
        assert!(error.contains("corrupt gzip"), "{error}");

        let error = decode_all(compression::Format::Gzip, b"not gzip at all", 1024).unwrap_err();
        assert!(error.contains("corrupt gzip"), "{error}");

        let error = decode_all(compression::Format::Gzip, b"", 1).unwrap_err();
        assert!(error.contains("truncated"), "an empty stream: {error}");
    }

    #[test]
    fn zero_padding_may_end_a_gzip_file_but_nothing_may_follow_it() {
        let mut padded = gzip(b"data");
        padded.extend([0; 1000]);
        let out = decode_all(compression::Format::Gzip, &padded, 300).unwrap();
        assert_eq!(out, b"data");

        padded.extend(gzip(b"more"));
        let error = decode_all(compression::Format::Gzip, &padded, 1 << 20).unwrap_err();
        assert!(error.contains("after the zero padding"), "{error}");
    }

    #[test]
    fn one_step_starts_a_bounded_number_of_members() {
        // Empty members: no output, a fresh inflate state each.
        let members = gzip(b"").repeat(1000);
        let mut inflater = Inflater::new(compression::Format::Gzip);
        let (used, output) = inflater.step(&members).unwrap();
        assert!(output.is_empty());
        assert!(
            used < members.len(),
            "one step went through all 1000 members"
        );
        assert!(
            decode_all(compression::Format::Gzip, &members, 1 << 20)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn truncated_zlib_and_deflate_streams_fail() {
        let data = sample(100_000);
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::fast());
        zlib.write_all(&data).unwrap();
        let zlib = zlib.finish().unwrap();
        let error =
            decode_all(compression::Format::Zlib, &zlib[..zlib.len() - 3], 1 << 20).unwrap_err();
        assert!(error.contains("truncated"), "{error}");

        let mut deflate = flate2::write::DeflateEncoder::new(Vec::new(), Compression::fast());
        deflate.write_all(&data).unwrap();
        let deflate = deflate.finish().unwrap();
        let half = &deflate[..deflate.len() / 2];
        let error = decode_all(compression::Format::Deflate, half, 1 << 20).unwrap_err();
        assert!(error.contains("truncated"), "{error}");
    }
}
