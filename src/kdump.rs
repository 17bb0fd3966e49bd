//! kdump-compressed dumps (being written).
