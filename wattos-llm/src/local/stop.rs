//! Incremental stop-sequence detection for streamed text: text that might be the start of a stop
//! sequence (or of a tool-call marker) is held back until it is known not to be.

/// What pushing a piece produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Text now safe to show the caller (possibly empty).
    pub(crate) emit: String,
    /// A stop sequence was found; generation must end.
    pub(crate) stopped: bool,
}

/// Accumulates generated text, cuts it at the first stop sequence, and switches to capture mode
/// (no more emitted text) when a marker such as `<tool_call>` appears.
#[derive(Debug)]
pub(crate) struct StopScanner {
    stops: Vec<String>,
    markers: Vec<String>,
    text: String,
    emitted: usize,
    capture_from: Option<usize>,
    stopped: bool,
}

impl StopScanner {
    /// A scanner for `stops` (empty strings ignored) and capture `markers`.
    pub(crate) fn new(stops: &[String], markers: &[&str]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            markers: markers.iter().map(|m| (*m).to_owned()).collect(),
            text: String::new(),
            emitted: 0,
            capture_from: None,
            stopped: false,
        }
    }

    /// The whole text so far, cut before a stop sequence once one was found.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Where captured text starts (the first marker), if a marker was seen.
    pub(crate) fn capture_start(&self) -> Option<usize> {
        self.capture_from
    }

    /// Appends a piece of generated text.
    pub(crate) fn push(&mut self, piece: &str) -> Scan {
        if self.stopped {
            return Scan {
                emit: String::new(),
                stopped: true,
            };
        }
        self.text.push_str(piece);
        // Anything before `emitted` was proven not to start a stop sequence, so search after it.
        let search_from = self.emitted.min(self.text.len());
        let stop_at = self
            .stops
            .iter()
            .filter_map(|s| {
                self.text[search_from..]
                    .find(s.as_str())
                    .map(|p| p + search_from)
            })
            .min();
        if let Some(at) = stop_at {
            self.text.truncate(at);
            self.stopped = true;
        }
        if self.capture_from.is_none() {
            let from = self.emitted.min(self.text.len());
            self.capture_from = self
                .markers
                .iter()
                .filter_map(|m| self.text[from..].find(m.as_str()).map(|p| p + from))
                .min();
        }
        let limit = match self.capture_from {
            Some(at) => at,
            None if self.stopped => self.text.len(),
            None => self.text.len() - self.held_back_suffix(),
        };
        let emit = if limit > self.emitted {
            let out = self.text[self.emitted..limit].to_owned();
            self.emitted = limit;
            out
        } else {
            String::new()
        };
        Scan {
            emit,
            stopped: self.stopped,
        }
    }

    /// At the end of generation: the text not yet emitted (empty in capture mode).
    pub(crate) fn flush(&mut self) -> String {
        if self.capture_from.is_some() || self.emitted >= self.text.len() {
            return String::new();
        }
        let out = self.text[self.emitted..].to_owned();
        self.emitted = self.text.len();
        out
    }

    /// Length in bytes of the longest tail of the unemitted text that could begin a stop sequence or
    /// marker.
    fn held_back_suffix(&self) -> usize {
        let pending = &self.text[self.emitted.min(self.text.len())..];
        let mut longest = 0;
        for pattern in self.stops.iter().chain(&self.markers) {
            for (i, _) in pending.char_indices() {
                let tail = &pending[i..];
                if tail.len() > longest && pattern.starts_with(tail) {
                    longest = tail.len();
                    break;
                }
            }
        }
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], markers: &[&str], pieces: &[&str]) -> (String, bool, StopScanner) {
        let stops: Vec<String> = stops.iter().map(|s| (*s).to_owned()).collect();
        let mut s = StopScanner::new(&stops, markers);
        let mut out = String::new();
        let mut stopped = false;
        for p in pieces {
            let scan = s.push(p);
            out.push_str(&scan.emit);
            if scan.stopped {
                stopped = true;
                break;
            }
        }
        if !stopped {
            out.push_str(&s.flush());
        }
        (out, stopped, s)
    }

    #[test]
    fn stop_sequence_split_across_pieces_is_cut() {
        let (out, stopped, s) = run(&["END"], &[], &["one two E", "N", "D three"]);
        assert_eq!(out, "one two ");
        assert!(stopped);
        assert_eq!(s.text(), "one two ");
    }

    #[test]
    fn partial_match_that_fails_is_released() {
        let (out, stopped, _) = run(&["END"], &[], &["a E", "Nx", " b"]);
        assert_eq!(out, "a ENx b");
        assert!(!stopped);
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let (out, _, _) = run(&["zz", "b"], &[], &["a b zz"]);
        assert_eq!(out, "a ");
    }

    #[test]
    fn held_back_prefix_is_flushed_at_the_end() {
        let (out, stopped, _) = run(&["STOP"], &[], &["text ST"]);
        assert_eq!(out, "text ST");
        assert!(!stopped);
    }

    #[test]
    fn marker_switches_to_capture() {
        let (out, _, s) = run(
            &[],
            &["<tool_call>"],
            &["Sure. <tool", "_call>[{\"name\"", "}]"],
        );
        assert_eq!(out, "Sure. ");
        assert_eq!(s.capture_start(), Some(6));
        assert_eq!(&s.text()[6..], "<tool_call>[{\"name\"}]");
    }

    #[test]
    fn multibyte_text_is_handled() {
        let (out, stopped, _) = run(&["ü"], &[], &["grün", "e"]);
        assert_eq!(out, "gr");
        assert!(stopped);
    }
}
