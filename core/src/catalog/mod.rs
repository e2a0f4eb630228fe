//! What batchling knows about the models it can send jobs to, as data: [`models`] (which
//! provider serves each one, its limits and capabilities) and [`pricing`] (list prices and the
//! rough cost estimate of a request). It depends on nothing but the provider ids.

pub mod models;
pub mod pricing;
