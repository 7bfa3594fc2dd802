pub mod expect;
pub mod middlebox;
pub mod simlink;
pub mod smtpscript;
pub mod wirecheck;
