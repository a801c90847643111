//! The handles a front end carries between application calls: the store's
//! connection, a model caller, the memory layer, the resource watch and
//! the embedder. Front ends get them from `Context` and `app`'s functions
//! and pass them back; what is read or changed through them is an `app`
//! function, so a rule lives in one place.

pub use crate::llm::caller::Caller;
pub use crate::memory::Memory;
pub use crate::memory::embed::Embedder;
pub use crate::resources::Watch;
pub use crate::store::Store;
