//! The compiler: lowers networks to Systole program images.
