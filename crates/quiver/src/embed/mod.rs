//! Local sentence embeddings (feature `embed`): text in, vectors out, in
//! pure Rust, from a Hugging Face model directory.
