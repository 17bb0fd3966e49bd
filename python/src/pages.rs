//! kvm_walk_pages(3) as a Python iterator.
//!
//! The library walks with a callback; Python wants to pull. A thread of
//! its own walks and sends the pages in batches over a bounded channel,
//! which the iterator takes from: pages stream (the walk never runs more
//! than a few batches ahead, whatever the dump's size), the GIL is free
//! while the walk runs, and dropping the iterator stops the walk at its
//! next batch.

use crate::records::Page;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, PoisonError};

/// Pages a batch carries.
const BATCH: usize = 1024;
/// Batches the walk may run ahead of the iterator.
const AHEAD: usize = 2;

/// What the walking thread sends.
enum Msg {
    Pages(Vec<kvm::Page>),
    /// The walk's result, last.
    End(kvm::Result<bool>),
}

enum State {
    /// Nothing walked yet: the walk starts at the first `next`.
    Idle(Arc<dyn kvm::AddressSpace>),
    Walking(Receiver<Msg>),
    Done,
}

/// Why the iterator stops early.
enum Failure {
    Kvm(kvm::Error),
    Spawn(std::io::Error),
    /// The walking thread ended without its result (it panicked).
    Lost,
}

struct Stream {
    state: State,
    batch: std::vec::IntoIter<kvm::Page>,
}

impl Stream {
    /// The next page, waiting for the walk: call with the GIL released.
    fn next(&mut self) -> Result<Option<kvm::Page>, Failure> {
        loop {
            if let Some(p) = self.batch.next() {
                return Ok(Some(p));
            }
            match &self.state {
                State::Idle(space) => {
                    let space = space.clone();
                    // Done unless the thread starts: a failed start is
                    // reported once, then the iterator is exhausted.
                    self.state = State::Done;
                    self.state = State::Walking(walk(space).map_err(Failure::Spawn)?);
                }
                State::Walking(rx) => match rx.recv() {
                    Ok(Msg::Pages(pages)) => self.batch = pages.into_iter(),
                    Ok(Msg::End(r)) => {
                        self.state = State::Done;
                        r.map_err(Failure::Kvm)?;
                        return Ok(None);
                    }
                    Err(_) => {
                        self.state = State::Done;
                        return Err(Failure::Lost);
                    }
                },
                State::Done => return Ok(None),
            }
        }
    }
}

/// Starts a thread walking `space`'s pages into a channel: batches, then
/// the walk's result. It stops when the receiver is gone.
fn walk(space: Arc<dyn kvm::AddressSpace>) -> std::io::Result<Receiver<Msg>> {
    let (tx, rx) = sync_channel(AHEAD);
    std::thread::Builder::new()
        .name("kvm-pages".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(BATCH);
            let mut gone = false;
            let walked = space.walk_pages(&mut |p| {
                batch.push(*p);
                if batch.len() == BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                    gone = tx.send(Msg::Pages(full)).is_err();
                }
                !gone
            });
            if gone || (!batch.is_empty() && tx.send(Msg::Pages(batch)).is_err()) {
                return;
            }
            // The receiver may be gone by now: nobody to tell.
            let _ = tx.send(Msg::End(walked));
        })?;
    Ok(rx)
}

/// An iterator of the Page records of a handle's mapped pages (what
/// AddressSpace.pages() returns), in the library's walk order. Pages come
/// as the walk finds them; a walk that fails raises KvmError at that
/// point.
#[pyclass(frozen, module = "kvm")]
pub struct PageIterator {
    stream: Mutex<Stream>,
}

impl PageIterator {
    /// An iterator that walks `space` once it is first asked for a page.
    pub fn new(space: Arc<dyn kvm::AddressSpace>) -> PageIterator {
        PageIterator {
            stream: Mutex::new(Stream {
                state: State::Idle(space),
                batch: Vec::new().into_iter(),
            }),
        }
    }
}

#[pymethods]
impl PageIterator {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Page>> {
        // A page of the batch at hand, without releasing the GIL. (Only
        // `try_lock` here: a thread waiting for the lock with the GIL held
        // would deadlock with one that holds it and waits for the GIL.)
        if let Ok(mut stream) = self.stream.try_lock() {
            if let Some(p) = stream.batch.next() {
                return Ok(Some(Page::from(&p)));
            }
        }
        let next = py.detach(|| {
            self.stream
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .next()
        });
        match next {
            Ok(page) => Ok(page.as_ref().map(Page::from)),
            Err(Failure::Kvm(e)) => Err(crate::error(py, e)),
            Err(Failure::Spawn(e)) => Err(e.into()),
            Err(Failure::Lost) => Err(PyRuntimeError::new_err(
                "the page walk ended without its result (its thread panicked)",
            )),
        }
    }
}
