//! Pictures for people: `png` writes RGB pictures, `overlay` draws a case's slices with the
//! prediction and truth contours, `curves` a run's loss and validation scores per epoch, `font`
//! the labels of both, `prediction_panels` a 2D network's image | truth | prediction rows.

pub mod curves;
pub mod font;
pub mod froc_curve;
pub mod overlay;
pub mod png;
pub mod prediction_panels;
