use proc_macro::TokenStream;
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
#[proc_macro_derive(Aggregate, attributes(aggregate, snapshot))]
pub fn derive_aggregate(_input: TokenStream) -> TokenStream {
    TokenStream::new()
}
