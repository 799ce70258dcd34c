//! Keeping secrets out of a RUN's output: every occurrence of a secret's value (and of each
//! line of a multi-line one) is shown as `****`, in the streamed output and in the lines a
//! failed step's error quotes. The stream holds back as many bytes as the longest value less
//! one, so a value split between two reads is still found.

const MASK: &[u8] = b"****";

/// Values shorter than this are not masked: a one-letter secret would mask every such
/// letter of the output, which hides the output without protecting the secret.
const SHORTEST: usize = 3;

#[derive(Debug, Default)]
pub struct Redactor {
    values: Vec<Vec<u8>>,
    pending: Vec<u8>,
    longest: usize,
}

impl Redactor {
    pub fn new(secrets: &[Vec<u8>]) -> Redactor {
        let mut values: Vec<Vec<u8>> = Vec::new();
        for secret in secrets {
            let trimmed = secret.strip_suffix(b"\n").unwrap_or(secret);
            values.push(trimmed.to_vec());
            if trimmed.contains(&b'\n') {
                values.extend(trimmed.split(|b| *b == b'\n').map(<[u8]>::to_vec));
            }
        }
        values.retain(|v| v.len() >= SHORTEST);
        // Longest first: a value that contains another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        let longest = values.first().map_or(0, Vec::len);
        Redactor { values, pending: Vec::new(), longest }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Takes the next bytes of the stream; returns what may be shown now.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.values.is_empty() {
            return bytes.to_vec();
        }
        self.pending.extend_from_slice(bytes);
        self.pending = self.mask(&self.pending);
        let keep = (self.longest - 1).min(self.pending.len());
        let shown = self.pending.len() - keep;
        self.pending.drain(..shown).collect()
    }

    /// The rest of the stream, once it has ended.
    pub fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.pending);
        self.mask(&rest)
    }

    /// `text` with every value masked.
    pub fn mask(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for value in &self.values {
            out = replace(&out, value);
        }
        out
    }

    /// `line` with every value masked, as text.
    pub fn mask_line(&self, line: &str) -> String {
        String::from_utf8_lossy(&self.mask(line.as_bytes())).into_owned()
    }
}

fn replace(text: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.windows(value.len()).position(|w| w == value) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(MASK);
        rest = &rest[at + value.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_between_reads_are_masked() {
        let mut r = Redactor::new(&[b"s3cr3t-value\n".to_vec()]);
        let mut shown = r.push(b"token is s3cr");
        shown.extend(r.push(b"3t-value and again s3cr3t-value"));
        shown.extend(r.push(b"!\n"));
        shown.extend(r.finish());
        assert_eq!(String::from_utf8(shown).unwrap(), "token is **** and again ****!\n");
    }

    #[test]
    fn lines_of_a_multi_line_secret_and_short_values() {
        let r = Redactor::new(&[b"-----BEGIN KEY-----\nAAAABBBB\n-----END KEY-----\n".to_vec(), b"x".to_vec()]);
        assert_eq!(r.mask_line("got AAAABBBB here, x stays"), "got **** here, x stays");
        assert!(Redactor::new(&[b"ab".to_vec()]).is_empty());
    }
}
